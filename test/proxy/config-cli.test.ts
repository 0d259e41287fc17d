// Config validation at the edge and the CLI's exit statuses (0 / 2 / 1) with messages naming file and key.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseConfigText, loadConfig, workerCount } from '../../proxy/config.ts'
import { FileInvalidError } from '../../proxy/errors.ts'
import { CLI, NODE, ROOT, tempDir } from '../helpers/proxy-process.ts'

function problemsOf (toml: string): Array<{ path: string, message: string }> {
  try {
    parseConfigText(toml, 'test.toml')
  } catch (err) {
    if (err instanceof FileInvalidError) return [...err.problems]
    throw err
  }
  return []
}

t.test('config: every bad key is reported with its dotted name', async (t) => {
  const cases: Array<[string, string, string]> = [
    ['unknown top-level key', 'dta_dir = "/x"', 'dta_dir'],
    ['unknown section key', '[listen]\nhtp = "127.0.0.1:80"', 'listen.htp'],
    ['unknown section', '[listner]\nhttp = ""', 'listner'],
    ['wrong type', '[acme]\nenabled = "yes"', 'acme.enabled'],
    ['bad duration', '[timeouts]\nconnect = "5 seconds"', 'timeouts.connect'],
    ['duration as number', '[chain]\nlease_ttl = 60', 'chain.lease_ttl'],
    ['bad address', '[listen]\nhttp = "localhost"', 'listen.http'],
    ['port out of range', '[listen]\nadmin = "127.0.0.1:99999"', 'listen.admin'],
    ['bad chain mode', '[chain]\nmode = "sibling"', 'chain.mode'],
    ['short psk', '[chain]\nmode = "parent"\nparent_url = "http://127.0.0.1:9000"\npsk = "short"', 'chain.psk'],
    ['child without child_url', '[chain]\nmode = "child"\nparent_url = "http://127.0.0.1:9000"\npsk = "0123456789abcdef"', 'chain.child_url'],
    ['bad trusted proxy', '[headers]\ntrusted_proxies = ["10.0.0.0/33"]', 'headers.trusted_proxies'],
    ['bad log level', '[log]\nlevel = "loud"', 'log.level'],
    ['TOML syntax', '[listen\nhttp = 1', 'line 1, column 8']
  ]
  for (const [name, toml, key] of cases) {
    const problems = problemsOf(toml)
    t.ok(problems.some((p) => p.path === key || p.path.startsWith(key)), `${name}: reported at ${key} (got ${problems.map((p) => p.path).join(', ') || 'nothing'})`)
  }
})

t.test('config: defaults of SPEC §3', async (t) => {
  const c = parseConfigText('', '/etc/vmfront/proxy.toml')
  t.equal(c.dataDir, '/var/lib/vmfront')
  t.equal(c.routesFile, '/var/lib/vmfront/routes.json')
  t.equal(c.pidFile, '/var/lib/vmfront/proxy.pid')
  t.same(c.listen.http, { host: '0.0.0.0', port: 80 })
  t.same(c.listen.https, { host: '0.0.0.0', port: 443 })
  t.same(c.listen.admin, { host: '127.0.0.1', port: 9180 })
  t.equal(c.acme.enabled, false, 'ACME is opt-in')
  t.equal(c.acme.directoryUrl, 'letsencrypt-staging')
  t.equal(c.chain.mode, 'none')
  t.equal(c.chain.leaseTtlMs, 60_000)
  t.same(c.headers.trustedProxies, [])
  t.ok(Object.isFrozen(c) && Object.isFrozen(c.listen), 'frozen')
  const off = parseConfigText('[listen]\nhttp = ""\nhttps = ""', 'x.toml')
  t.equal(off.listen.http, undefined, '"" disables a listener')
  t.ok(loadConfig(undefined).listen.http !== undefined, 'the embedded default loads')
})

const run = (args: string[]): { status: number | null, stdout: string, stderr: string } => {
  const r = spawnSync(NODE, [CLI, ...args], { encoding: 'utf8', cwd: ROOT, timeout: 30_000 })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

t.test('vmfront proxy: invalid config exits 2 naming the file and key', async (t) => {
  const dir = tempDir(t)
  const file = join(dir, 'bad.toml')
  writeFileSync(file, '[listen]\nhttp = "127.0.0.1:0"\nbogus = 1\n[timeouts]\nconnect = "soon"\n')
  const r = run(['proxy', '--config', file])
  t.equal(r.status, 2)
  t.match(r.stderr, file)
  t.match(r.stderr, 'listen.bogus')
  t.match(r.stderr, 'timeouts.connect')
  const missing = run(['proxy', '--config', join(dir, 'nope.toml')])
  t.equal(missing.status, 2, 'an unreadable config exits 2')
  t.match(missing.stderr, 'nope.toml')
  t.equal(run(['proxy', '--bogus']).status, 2, 'an unknown flag exits 2')
  t.equal(run(['frobnicate']).status, 2, 'an unknown command exits 2')
})

t.test('vmfront proxy: a port in use is a runtime failure (exit 1)', async (t) => {
  const net = await import('node:net')
  const blocker = net.createServer()
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
  t.teardown(() => blocker.close())
  const port = (blocker.address() as { port: number }).port
  const dir = tempDir(t)
  const file = join(dir, 'p.toml')
  writeFileSync(file, `data_dir = "${dir}/data"\nroutes_file = "${dir}/routes.json"\npid_file = "${dir}/p.pid"\n[listen]\nhttp = "127.0.0.1:${port}"\nhttps = ""\nadmin = ""\n`)
  const r = run(['proxy', '--config', file])
  t.equal(r.status, 1)
  t.match(r.stderr, /address already in use/)
})

t.test('vmfront routes check', async (t) => {
  const dir = tempDir(t)
  const good = join(dir, 'good.json')
  const bad = join(dir, 'bad.json')
  writeFileSync(good, JSON.stringify({ version: 1, routes: [{ domain: 'a.test', target: 'http://10.0.0.1:80' }] }))
  writeFileSync(bad, JSON.stringify({ version: 1, routes: [{ domain: 'a.test', target: 'http://10.0.0.1:80' }, { domain: 'B.test', redirect_to: 'a.test', redirect_code: 303 }] }))
  const ok = run(['routes', 'check', good])
  t.equal(ok.status, 0)
  t.match(ok.stdout, /valid/)
  const ko = run(['routes', 'check', bad])
  t.equal(ko.status, 2)
  t.match(ko.stdout, `${bad}: $.routes[1].domain: `, 'each problem on its own line, with its JSON path')
  t.match(ko.stdout, `${bad}: $.routes[1].redirect_code: `)
  t.match(ko.stderr, 'invalid, 2 problems at $.routes[1].domain, $.routes[1].redirect_code')
  t.equal(run(['routes', 'check', join(dir, 'missing.json')]).status, 2)
  t.equal(run(['routes', 'check', join(ROOT, 'examples/routes.json')]).status, 0, 'the shipped example is valid')
})

t.test('[server] workers (SPEC §12): 0 = one per CPU, a chain parent or child included', async (t) => {
  t.same(parseConfigText('[server]\nworkers = 4\n', 'w.toml').warnings, [], 'several workers: no warning')
  t.equal(workerCount(parseConfigText('[server]\nworkers = 4\n', 'w.toml')), 4)
  t.equal(workerCount(parseConfigText('', 'w.toml'), 3), 3, 'the default follows the CPUs')
  const chained = parseConfigText('[server]\nworkers = 4\n[chain]\nmode = "parent"\nparent_url = "http://127.0.0.1:7000"\npsk = "0123456789abcdef0123456789abcdef"\n', 'w.toml')
  t.equal(workerCount(chained), 4, 'a chain parent runs its workers too')
  t.same(chained.warnings, [], 'and says nothing about it')
  t.equal(parseConfigText('[server]\nworkers = 4\n', 'w.toml').server.workers, 4)
  t.same(problemsOf('[server]\nworkers = -1').map((p) => p.path), ['server.workers'], 'a negative count is an error')
  t.same(problemsOf('[server]\nworkerz = 2').map((p) => p.message), ['is not a known key: did you mean "workers"?'])
})
