/**
 * Chain child mode: the daemon asks the parent before accepting a new domain, and
 * the answer is binding. The parent here is a hono TEST DOUBLE of the chain API's
 * `POST /chain/v1/check` (the real parent is the proxy's chain API).
 */
import t from 'tap'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import type http from 'node:http'
import { Hono } from 'hono'
import { createAdaptorServer } from '@hono/node-server'
import { createParentCheck } from '../../daemon-adapter/chain-check.ts'
import { parseDaemonConfig } from '../../daemon-adapter/config.ts'
import { silentLogger } from '../../daemon-adapter/log.ts'
import { deadPort } from '../helpers/backend.ts'
import { runVm, startDaemonProcess, tempDir, writeDaemonConfig } from './daemon-process.ts'

const PSK = 'chain-test-psk-0123456789'

interface Parent { url: string, asked: { name: string, domains: string[] }[] }

/** A fake parent: 401 on a bad PSK; `owned` domains belong to other children. */
async function startParent (t: { teardown (fn: () => unknown): void }, owned: Record<string, string>, options: { hang?: boolean } = {}): Promise<Parent> {
  const asked: Parent['asked'] = []
  const app = new Hono()
  app.post('/chain/v1/check', async (c) => {
    if (c.req.header('authorization') !== `Bearer ${PSK}`) return c.json({ error: 'bad psk' }, 401)
    if (options.hang === true) await new Promise(() => {})
    const body = await c.req.json<{ name: string, domains: string[] }>()
    asked.push(body)
    return c.json({ conflicts: body.domains.filter((d) => owned[d] !== undefined && owned[d] !== body.name).map((d) => ({ domain: d, owner: owned[d] })) })
  })
  const server = createAdaptorServer({ fetch: app.fetch })
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  t.teardown(() => { (server as http.Server).closeAllConnections(); server.close() })
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, asked }
}

const chainConfig = (parentUrl: string, extra: Record<string, unknown> = {}) =>
  parseDaemonConfig({ chain: { parent_url: parentUrl, psk: PSK, name: 'child-a', ...extra } }, 'daemon.toml').chain

t.test('the check: free, conflicting, bad PSK, unreachable, slow', async (t) => {
  const parent = await startParent(t, { 'taken.example.com': 'child-b', 'mine.example.com': 'child-a' })
  const check = createParentCheck(chainConfig(parent.url), silentLogger())
  if (check === undefined) throw new Error('expected a check in child mode')
  await check(['free.example.com', 'mine.example.com'])
  t.same(parent.asked.at(-1), { name: 'child-a', domains: ['free.example.com', 'mine.example.com'] }, 'the child names itself and its domains')
  await t.rejects(check(['free.example.com', 'taken.example.com']), {
    code: 'CHAIN_CONFLICT',
    message: 'taken.example.com is already claimed by "child-b" at the chain parent',
    details: { conflicts: [{ domain: 'taken.example.com', owner: 'child-b' }] }
  })

  const wrongPsk = createParentCheck({ ...chainConfig(parent.url), psk: 'not-the-right-psk-at-all' }, silentLogger())
  await t.rejects(wrongPsk?.(['a.example.com']) ?? Promise.resolve(), { code: 'CHAIN_REJECTED', message: /401/ })

  const down = `http://127.0.0.1:${await deadPort()}`
  const refuse = createParentCheck(chainConfig(down), silentLogger())
  await t.rejects(refuse?.(['a.example.com']) ?? Promise.resolve(), { code: 'CHAIN_UNREACHABLE', message: /cannot ask the chain parent/ })
  const allow = createParentCheck(chainConfig(down, { on_unreachable: 'allow' }), silentLogger())
  await t.resolves(allow?.(['a.example.com']) ?? Promise.reject(new Error('no check')), 'on_unreachable = "allow" lets it through')

  const slowParent = await startParent(t, {}, { hang: true })
  const slow = createParentCheck(chainConfig(slowParent.url, { timeout: '200ms' }), silentLogger())
  await t.rejects(slow?.(['a.example.com']) ?? Promise.resolve(), { code: 'CHAIN_UNREACHABLE', message: /no answer within 200 ms/ })

  t.equal(createParentCheck(parseDaemonConfig({}, 'x').chain, silentLogger()), undefined, 'not a child: no check')
})

t.test('the daemon in child mode: the parent\'s answer is binding', async (t) => {
  const dir = tempDir(t)
  const parent = await startParent(t, { 'taken.example.com': 'child-b' })
  const configFile = writeDaemonConfig(dir, `[chain]\nparent_url = "${parent.url}"\npsk = "${PSK}"\nname = "child-a"\ntimeout = "2s"`)
  const daemon = await startDaemonProcess(t, configFile)
  const env = { VMFRONT_URL: daemon.url, VMFRONT_KEY: readFileSync(join(dir, 'data', 'api-key'), 'utf8').trim() }
  const file = (name: string, text: string): string => { const f = join(dir, `${name}.toml`); writeFileSync(f, text); return f }

  const ok = await runVm(['vm', 'create', file('app', 'name = "app"\naddress = "127.0.0.1"\ndomains = ["app.example.com"]\n')], env)
  t.equal(ok.code, 0, ok.stderr)
  t.same(parent.asked, [{ name: 'child-a', domains: ['app.example.com'] }])

  const clash = await runVm(['vm', 'create', file('web', 'name = "web"\naddress = "127.0.0.1"\ndomains = ["web.example.com", "taken.example.com"]\n')], env)
  t.equal(clash.code, 1)
  t.match(clash.stderr, 'taken.example.com is already claimed by "child-b" at the chain parent')
  t.equal((await runVm(['vm', 'info', 'web'], env)).code, 1, 'nothing was created')
  t.notMatch(readFileSync(join(dir, 'routes.json'), 'utf8'), 'web.example.com')

  // A rebuild asks only about domains this host does not have yet.
  parent.asked.length = 0
  t.equal((await runVm(['vm', 'rebuild', 'app'], env)).code, 0)
  t.same(parent.asked, [], 'no new domain: the parent is not asked')
  const grown = await runVm(['vm', 'rebuild', 'app', file('app2', 'name = "app"\naddress = "127.0.0.1"\ndomains = ["app.example.com", "new.example.com"]\n')], env)
  t.equal(grown.code, 0, grown.stderr)
  t.same(parent.asked, [{ name: 'child-a', domains: ['new.example.com'] }])
})

t.test('the daemon in child mode with the parent down refuses new domains', async (t) => {
  const dir = tempDir(t)
  const configFile = writeDaemonConfig(dir, `[chain]\nparent_url = "http://127.0.0.1:${await deadPort()}"\npsk = "${PSK}"`)
  const daemon = await startDaemonProcess(t, configFile)
  const env = { VMFRONT_URL: daemon.url, VMFRONT_KEY: readFileSync(join(dir, 'data', 'api-key'), 'utf8').trim() }
  const f = join(dir, 'app.toml')
  writeFileSync(f, 'name = "app"\naddress = "127.0.0.1"\ndomains = ["app.example.com"]\n')
  const refused = await runVm(['vm', 'create', f], env)
  t.equal(refused.code, 1)
  t.match(refused.stderr, /cannot ask the chain parent http:\/\/127\.0\.0\.1:\d+\/chain\/v1\/check about conflicts/)
  t.same(JSON.parse((await runVm(['vm', 'list', '--json'], env)).stdout), [])
})

t.test('a mulch-proxy parent: Mulch\'s POST /domains/conflicts, found by "auto" or named', async (t) => {
  const { startMulchParent } = await import('../chain/mulch-standin.ts')
  const parent = await startMulchParent(t, { psk: PSK })
  // Another mulch child already owns one domain; this child's own domains are no conflict.
  parent.chained.set('taken.example.com', 'http://10.9.9.9:80')
  parent.chained.set('mine.example.com', 'http://10.0.0.2:80')
  for (const protocol of ['auto', 'mulch'] as const) {
    const check = createParentCheck(chainConfig(parent.apiUrl, { parent_protocol: protocol, child_url: 'http://10.0.0.2:80' }), silentLogger())
    if (check === undefined) throw new Error('expected a check in child mode')
    await check(['free.example.com', 'mine.example.com'])
    const asked = parent.calls.filter((c) => c.path === '/domains/conflicts').at(-1)
    t.equal(asked?.headers['mulch-psk'], PSK, `${protocol}: Mulch-PSK sent`)
    t.same(JSON.parse(asked?.body ?? '{}'), { Domains: [{ Domain: 'free.example.com', RateProfile: '' }, { Domain: 'mine.example.com', RateProfile: '' }], ForwardTo: 'http://10.0.0.2:80' }, `${protocol}: Mulch's JSON, as mulchd sends it`)
    await t.rejects(check(['taken.example.com']), {
      code: 'CHAIN_CONFLICT',
      message: 'taken.example.com is already claimed by "10.9.9.9" at the chain parent'
    }, `${protocol}: a conflict names the owner`)
  }
  t.equal(parent.calls.filter((c) => c.path === '/chain/v1/check').length, 1, '"auto" asked vmfront\'s API once, then kept to Mulch\'s')
  const wrong = createParentCheck(chainConfig(parent.apiUrl, { parent_protocol: 'mulch', psk: 'not-the-right-psk-at-all' }), silentLogger())
  await t.rejects(wrong?.(['a.example.com']) ?? Promise.resolve(), { code: 'CHAIN_REJECTED', message: /403/ })
})
