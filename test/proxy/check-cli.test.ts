// `vmfront check` end to end: the real CLI process, exit statuses 0/2, problems one per
// line (FILE:LINE: KEY: message) or as JSON, per-command help, and nothing bound or written:
// a config whose listeners are in use is still valid, and no pid file or data_dir appears.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { join } from 'node:path'
import { CLI, NODE, ROOT, tempDir } from '../helpers/proxy-process.ts'

function run (args: string[]): { status: number | null, stdout: string, stderr: string } {
  const r = spawnSync(NODE, [CLI, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

async function listen (t: { teardown: (fn: () => unknown) => void }): Promise<number> {
  const server: Server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => server.close(resolve)))
  return (server.address() as { port: number }).port
}

t.test('check --help prints its usage on stdout and exits 0', async (t) => {
  const r = run(['check', '--help'])
  t.equal(r.status, 0)
  t.match(r.stdout, /^Usage: vmfront check \[--config FILE\] \[--mulch-config DIR_OR_FILE\] \[--json\]/)
  t.equal(r.stderr, '')
  t.match(run(['help']).stdout, /check \[--config FILE\] \[--json\]/, 'listed in the top-level usage')
  const typo = run(['chek'])
  t.equal(typo.status, 2)
  t.match(typo.stderr, /unknown command "chek": did you mean "check"\?/)
})

t.test('a valid config whose ports are in use: valid, nothing bound, nothing written', async (t) => {
  const dir = tempDir(t, 'vmfront-check-cli-')
  const [httpPort, httpsPort, adminPort] = [await listen(t), await listen(t), await listen(t)]
  writeFileSync(join(dir, 'routes.json'), JSON.stringify({ version: 1, routes: [{ domain: 'a.test', target: 'http://127.0.0.1:8081' }, { domain: 'b.test', redirect_to: 'a.test' }] }))
  const config = join(dir, 'proxy.toml')
  // ACME on, with a directory nobody answers: check neither contacts it nor creates an account.
  writeFileSync(config, `data_dir = "data"\nroutes_file = "routes.json"\npid_file = "run/proxy.pid"\n[listen]\nhttp = "127.0.0.1:${httpPort}"\nhttps = "127.0.0.1:${httpsPort}"\nadmin = "127.0.0.1:${adminPort}"\n[acme]\nenabled = true\ndirectory_url = "https://127.0.0.1:1/directory"\n`)
  const before = readdirSync(dir).sort()
  const r = run(['check', '--config', config])
  t.equal(r.status, 0, r.stderr)
  t.equal(r.stdout, `vmfront check: ${config} is valid: 2 routes (v1 format), 0 extra certificates, listeners: http 127.0.0.1:${httpPort}, https 127.0.0.1:${httpsPort}, admin 127.0.0.1:${adminPort}\n`)
  t.equal(r.stderr, '')
  t.same(readdirSync(dir).sort(), before, 'no file or folder created')
  t.notOk(existsSync(join(dir, 'data')), 'no data_dir')
  t.notOk(existsSync(join(dir, 'run/proxy.pid')), 'no pid file')

  const json = run(['check', '--config', config, '--json'])
  t.equal(json.status, 0)
  t.same(JSON.parse(json.stdout), { ok: true, problems: [], summary: { routes: 2, routeFormat: 'v1', certificates: 0, listeners: { http: `127.0.0.1:${httpPort}`, https: `127.0.0.1:${httpsPort}`, admin: `127.0.0.1:${adminPort}` } } })
})

t.test('an invalid config: every problem on stdout with file, line and key; verdict on stderr; exit 2', async (t) => {
  const dir = tempDir(t, 'vmfront-check-cli-')
  writeFileSync(join(dir, 'routes.json'), '{\n  "version": 1,\n  "routes": [\n    { "domain": "a.test", "target": "http://127.0.0.1:8081", "rate_profile": "vip" }\n  ]\n}\n')
  const config = join(dir, 'proxy.toml')
  writeFileSync(config, 'data_dir = "data"\nroutes_file = "routes.json"\n[listen]\nhttp = "127.0.0.1:18080"\nhttps = ""\nadmin = "127.0.0.1:18080"\n[chain]\nmode = "prent"\n')
  const r = run(['check', '-c', config])
  t.equal(r.status, 2)
  t.equal(r.stdout, [
    `${config}:6: listen.admin: "127.0.0.1:18080" takes the port of listen.http = "127.0.0.1:18080": two listeners cannot share port 18080; give each its own port`,
    `${config}:8: chain.mode: must be one of "none", "parent", "child", not string "prent"`,
    `${join(dir, 'routes.json')}:4: warning: $.routes[0].rate_profile: unknown rate profile "vip": the route would use "default" (the [[rate_profile]] names are: default)`,
    ''
  ].join('\n'))
  t.equal(r.stderr, `vmfront check: ${config} is invalid: 2 problems (1 warning)\n`)

  const json = run(['check', '--json', '--config', config])
  t.equal(json.status, 2)
  const doc = JSON.parse(json.stdout) as { ok: boolean, problems: Array<Record<string, unknown>> }
  t.equal(doc.ok, false)
  t.same(doc.problems.map((p) => [p.file, p.line, p.key, p.severity]), [
    [config, 6, 'listen.admin', 'error'],
    [config, 8, 'chain.mode', 'error'],
    [join(dir, 'routes.json'), 4, '$.routes[0].rate_profile', 'warning']
  ])
})

t.test('a config file that cannot be read, and bad usage', async (t) => {
  const dir = tempDir(t, 'vmfront-check-cli-')
  const r = run(['check', '--config', join(dir, 'nope.toml')])
  t.equal(r.status, 2)
  t.equal(r.stdout, `${join(dir, 'nope.toml')}: cannot read the config file: no such file or directory\n`)
  const bad = run(['check', '--confg', 'x'])
  t.equal(bad.status, 2)
  t.match(bad.stderr, /^vmfront check: Unknown option '--confg'/)
  t.match(bad.stderr, /Usage: vmfront check/)
})

t.test('the embedded default is valid', async (t) => {
  const r = run(['check'])
  t.equal(r.status, 0, r.stdout + r.stderr)
  t.match(r.stdout, /^vmfront check: <embedded default> is valid: \d+ routes? \(v1 format\), 0 extra certificates, listeners: http 127\.0\.0\.1:8080, https 127\.0\.0\.1:8443, admin 127\.0\.0\.1:9180, example_backend 127\.0\.0\.1:8081\n$/)
})
