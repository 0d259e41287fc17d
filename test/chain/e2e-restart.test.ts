// Start-up order and restarts: a child started while its parent is down serves its own
// traffic and registers once the parent is up; a restarted parent serves chained
// domains at once from the registrations it saved.
import t from 'tap'
import { statSync } from 'node:fs'
import { join } from 'node:path'
import { routesDoc } from '../helpers/proxy-process.ts'
import { deadPort, startBackend } from '../helpers/backend.ts'
import { chainStatus, get, respawn, startChild, startParent, until } from './chain-helpers.ts'

t.test('child first, parent later; then the parent restarts', async (t) => {
  const vm = await startBackend(t)
  const apiPort = await deadPort()
  const chain = { lease_ttl: '3s' }
  const child = await startChild(t, { apiPort, name: 'early', routes: routesDoc([{ domain: 'app.example.com', target: vm.origin }]), chain })

  await t.test('the child serves its own traffic while the parent is unreachable', async (t) => {
    await child.waitForLog((l) => l.msg === 'chain registration failed: retrying')
    const direct = await get(child.port, 'app.example.com')
    t.equal(direct.status, 200)
    const status = await chainStatus(child)
    t.equal(status.registered, false)
    t.ok(status.failures >= 1)
    t.match(status.last_error, /unreachable/)
  })

  const parent = await startParent(t, { apiPort, chain })
  await t.test('it registers once the parent is up', async (t) => {
    const registered = await parent.waitForLog((l) => l.msg === 'chain child registered' && l.child === 'early', 5000)
    t.equal(registered.url, `http://127.0.0.1:${child.port}`)
    const res = await until('the chained domain through the parent', async () => {
      const r = await get(parent.ports.http, 'app.example.com')
      return r.status === 200 ? r : undefined
    })
    t.equal(res.status, 200)
  })

  await t.test('a restarted parent serves chained domains at once from its saved registrations', async (t) => {
    const file = join(parent.dir, 'data', 'chain-children.json')
    t.equal(statSync(file).mode & 0o777, 0o600, 'saved 0600 in data_dir')
    await parent.stop('SIGTERM')
    // Freeze the child so it cannot re-register: whatever the new parent knows, it read from disk.
    process.kill(child.child.pid!, 'SIGSTOP')
    t.teardown(() => { try { process.kill(child.child.pid!, 'SIGCONT') } catch { /* gone */ } })
    const again = await respawn(t, parent)
    const restored = again.logs.find((l) => l.msg === 'chain registrations restored')
    t.ok(restored, 'restored before "vmfront proxy started"')
    t.same((restored?.children as Array<{ name: string }>).map((c) => c.name), ['early'])
    const frozen = await get(again.ports.http, 'app.example.com')
    t.equal(frozen.status, 502, 'the route is known at once (502: its child is frozen; an unknown domain is 404)')
    t.equal((await get(again.ports.http, 'other.example.com')).status, 404)
    process.kill(child.child.pid!, 'SIGCONT')
    const res = await until('traffic through the restarted parent', async () => {
      const r = await get(again.ports.http, 'app.example.com')
      return r.status === 200 ? r : undefined
    })
    t.equal(res.status, 200)
    t.equal(await again.stop('SIGTERM'), 0)
  })
})
