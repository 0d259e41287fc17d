/**
 * SPEC §12: chain keepalive and PSK change on SIGHUP, without a restart. A parent (with
 * 2 workers: each reloads its own) and a child get a new psk, and the parent a new
 * ping interval: the parent's API refuses the old PSK and takes the new one, /status
 * shows the new keepalive, the child re-registers with the new PSK, and a chained
 * domain is served again over sessions proven with the new PSK. A config that only
 * changed these keys needs no restart.
 */
import t from 'tap'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { routesDoc } from '../helpers/proxy-process.ts'
import { startBackend } from '../helpers/backend.ts'
import { api, chainStatus, get, PSK, startChild, startParent, until } from './chain-helpers.ts'

const NEW_PSK = 'a-new-chain-psk-9876543210'

function rewrite (dir: string, edit: (toml: string) => string): void {
  const file = join(dir, 'proxy.toml')
  writeFileSync(file, edit(readFileSync(file, 'utf8')))
}

t.test('a SIGHUP applies a new chain psk and keepalive to a running parent and child', async (t) => {
  const vm = await startBackend(t)
  const parent = await startParent(t, { workers: 2, routes: routesDoc([]) })
  const child = await startChild(t, { apiPort: parent.apiPort, name: 'c1', routes: routesDoc([{ domain: 'app.example.com', target: vm.origin }]) })
  await until('the chained domain served', async () => (await get(parent.ports.http, 'app.example.com')).status === 200 ? true : undefined)

  const check = { name: 'c1', domains: ['free.example.com'] }
  t.equal((await api(parent.api, 'check', check)).status, 200, 'the API takes the PSK in service')

  rewrite(parent.dir, (s) => s.replace(`psk = "${PSK}"`, `psk = "${NEW_PSK}"`).replace('ping_interval = "200ms"', 'ping_interval = "250ms"'))
  const from = parent.logs.length
  parent.child.kill('SIGHUP')
  const reloaded = await parent.waitForLog((l) => l.msg === 'config reloaded', 15_000, from)
  t.same([...(reloaded.applied as string[])].sort(), ['chain.ping_interval', 'chain.psk'], 'applied live')
  t.same(reloaded.needs_restart, [], 'nothing needs a restart')
  await parent.waitForLog((l) => l.msg === 'routes loaded' || l.msg === 'route file unchanged', 15_000, from)
  t.equal((await api(parent.api, 'check', check)).status, 401, 'the old PSK is refused')
  t.equal((await api(parent.api, 'check', check, NEW_PSK)).status, 200, 'the new one is taken')
  t.equal((await chainStatus(parent)).keepalive.ping_interval_ms, 250, '/status shows the new keepalive')

  rewrite(child.dir, (s) => s.replace(`psk = "${PSK}"`, `psk = "${NEW_PSK}"`))
  const childFrom = child.logs.length
  child.child.kill('SIGHUP')
  await child.waitForLog((l) => l.msg === 'chain registered with parent' && l.reason === 'SIGHUP', 15_000, childFrom)
  t.pass('the child re-registered with the new PSK')
  t.notOk(child.logs.slice(childFrom).some((l) => l.msg === 'config change needs a restart (vmfront proxy --takeover): the running value is kept'), 'the child needs no restart either')
  // New sessions (the parent's keepalive changed: each worker opens new ones) prove the new PSK.
  const served = await until('the chained domain served over new sessions', async () => {
    const res = await get(parent.ports.http, 'app.example.com')
    return res.status === 200 ? res : undefined
  })
  t.equal(served.status, 200)
  t.notOk(parent.logs.slice(from).some((l) => typeof l.msg === 'string' && l.msg.includes('the child refused the session proof')), 'no session proof was refused once both had the new PSK')
})
