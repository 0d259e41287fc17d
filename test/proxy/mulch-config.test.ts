// `vmfront proxy --mulch-config DIR_OR_FILE` (SPEC §10): Mulch's mulchd.toml mapped
// key by key, mulch-proxy's defaults and file locations, an optional vmfront --config
// for vmfront-only settings, and a real proxy process serving mulchd's files.
import t from 'tap'
import { spawn, spawnSync } from 'node:child_process'
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { request } from 'undici'
import { loadMulchConfig, loadMulchConfigWithSources, mulchConfigSources, mulchConfigToProxyConfig, type MulchConfigSource } from '../../proxy/mulch-config.ts'
import { tomlKeyLines } from '../../proxy/toml-positions.ts'
import { isTopLevelConfigKey } from '../../proxy/config.ts'
import { FileInvalidError } from '../../proxy/errors.ts'
import { CLI, NODE, ROOT, tempDir } from '../helpers/proxy-process.ts'
import { followProcess } from '../helpers/process-logs.ts'
import { startBackend } from '../helpers/backend.ts'

const FIXTURES = join(ROOT, 'test/fixtures/mulch')
const REAL_TOML = readFileSync(join(FIXTURES, 'mulchd.toml'), 'utf8')

function source (text: string, present = { extraCerts: false, errorTemplate: false }): MulchConfigSource {
  return { file: '/etc/mulch/mulchd.toml', text, cwd: '/srv', present }
}

function problemsOf (fn: () => unknown): Array<{ path: string, message: string }> {
  try {
    fn()
  } catch (err) {
    if (err instanceof FileInvalidError) return [...err.problems]
    throw err
  }
  return []
}

t.test('the real mulchd.toml maps key by key', async (t) => {
  const m = mulchConfigToProxyConfig(source(REAL_TOML, { extraCerts: true, errorTemplate: true }))
  // ports_file (SPEC §11) is mapped once the config has the key (TCP forwarding is merged separately).
  if (isTopLevelConfigKey('ports_file')) t.equal(m.given.ports_file, '/var/lib/mulch/mulch-proxy-ports-v2.db')
  else t.notOk('ports_file' in m.given)
  const { ports_file: _ports, ...given } = m.given
  t.same(given, {
    data_dir: '/var/lib/mulch',
    routes_file: '/var/lib/mulch/mulch-proxy-domains.db',
    pid_file: '/var/lib/mulch/mulch-proxy-last.pid',
    tls: { extra_certs_file: '/etc/mulch/extra_certs.toml' },
    error_pages: { template: '/etc/mulch/templates/error_page.html' },
    acme: { directory_url: 'https://acme-staging-v02.api.letsencrypt.org/directory', email: 'ops@example.com', extra_domains: ['mulch.example.com'] },
    listen: { http: ':80', https: ':443' },
    chain: { mode: 'child', parent_url: 'https://front.example.com:8787', psk: '0123456789abcdef0123', child_url: 'http://10.0.0.2:80' },
    headers: { trusted_proxies: [] },
    rate_profile: [{
      name: 'default',
      concurrent_max_requests: 32,
      concurrent_overflow_timeout: '2000ms',
      limit_burst_requests: 60,
      limit_requests_per_second: 5,
      limit_max_delay: '1500ms',
      vip_list: ['203.0.113.10']
    }]
  })
  t.same(m.defaults, { acme: { enabled: true } }, 'mulch-proxy always runs ACME; a --config may turn it off')
  t.same(m.origins.get('listen.http'), { mulchKey: 'proxy_listen_http', line: tomlKeyLines(REAL_TOML).get('proxy_listen_http') })
  t.equal(m.origins.get('routes_file')?.mulchKey, 'data_path')
  t.same(m.warnings, [], 'proxy_listen_ssh is mulchd\'s: silently skipped')
  const sources = mulchConfigSources(m, { file: '/etc/mulch/mulchd.toml', text: REAL_TOML })
  t.same(sources.locate('rate_profile[0].limit_max_delay'), { file: '/etc/mulch/mulchd.toml', line: 25, key: 'proxy_rate[0].limit_max_delay_seconds' })
  t.same(sources.locate('log.level'), { file: '/etc/mulch/mulchd.toml', key: 'log.level' }, 'a vmfront default: no line')
})

t.test('mulch-proxy\'s defaults where the file is silent; its special values', async (t) => {
  const empty = mulchConfigToProxyConfig(source('libvirt_uri = "qemu:///system"\n'))
  t.equal(empty.given.data_dir, '/srv/var/data', 'data_path "./var/data", relative to the working directory as in mulch-proxy')
  t.same(empty.defaults, { acme: { enabled: true, directory_url: 'letsencrypt-staging' }, listen: { http: ':80', https: ':443' } })
  t.notOk('chain' in empty.given)
  t.notOk('rate_profile' in empty.given, 'no [[proxy_rate]]: vmfront\'s unlimited default, as mulch\'s')

  const special = mulchConfigToProxyConfig(source('proxy_acme_url = "LETS_ENCRYPT_PRODUCTION"\nproxy_listen_http = ""\nproxy_listen_https = ""\n'))
  t.equal((special.given.acme as Record<string, unknown>).directory_url, 'letsencrypt')
  t.same(special.given.listen, { http: ':80', https: ':443' }, 'an empty address is Go\'s ":http" / ":https"')
})

t.test('invalid files: every problem named with its key and line, as mulch-proxy refuses them', async (t) => {
  const text = [
    'data_path = "/var/lib/mulch"', // 1
    'proxy_listen_ssh = ":8022"', // 2
    'proxy_ssh_extra_keys_file = ""', // 3
    'proxy_colour = "blue"', // 4
    'proxy_chain_mode = "sibling"', // 5
    'storage_path = "/srv/mulch"', // 6
    '[[proxy_rate]]', // 7
    'name = "default"', // 8
    'limit_burst_requests = 10', // 9
    'typo = 1', // 10
    '[[proxy_rate]]', // 11
    'name = "default"' // 12
  ].join('\n')
  const problems = problemsOf(() => mulchConfigToProxyConfig(source(text)))
  t.same(problems.map((p) => p.path), [
    'proxy_colour (line 4)',
    'proxy_chain_mode (line 5)',
    'proxy_rate[0].typo (line 10)',
    'proxy_rate[0].limit_requests_per_second (line 7)',
    'proxy_rate[0].limit_max_delay_seconds (line 7)',
    'proxy_rate[1].name (line 12)'
  ])
  t.match(problems[0].message, /not a setting mulch-proxy knows/)
  t.match(problems[5].message, /duplicate proxy_rate name "default"/)
  t.same(problemsOf(() => mulchConfigToProxyConfig(source('proxy_chain_mode = "parent"\nproxy_chain_parent_url = "http://0.0.0.0:8787"\nproxy_chain_psk = "0123456789abcdef"\nproxy_chain_child_url = "http://x"\n'))).map((p) => p.path), ['proxy_chain_child_url (line 4)'], 'a parent has no child URL')
  t.same(problemsOf(() => mulchConfigToProxyConfig(source('proxy_trusted_proxies = ["10.0.0.1", "10.0.0.1"]\nproxy_listen_http = 80\n'))).map((p) => p.path), ['proxy_listen_http (line 2)', 'proxy_trusted_proxies (line 1)'])
})

/** Writes a Mulch installation: config folder and data_path. */
function mulchInstall (t: { teardown (fn: () => unknown): void }, toml: (dataPath: string) => string): { dir: string, etc: string, data: string } {
  const dir = tempDir(t, 'vmfront-mulch-')
  const etc = join(dir, 'etc')
  const data = join(dir, 'data')
  mkdirSync(join(etc, 'templates'), { recursive: true })
  mkdirSync(data)
  writeFileSync(join(etc, 'mulchd.toml'), toml(data))
  return { dir, etc, data }
}

function runCli (args: string[]): { status: number | null, stderr: string } {
  const r = spawnSync(NODE, [CLI, ...args], { encoding: 'utf8', timeout: 20_000 })
  return { status: r.status, stderr: r.stderr }
}

t.test('--config gives vmfront-only settings; a setting in both files is exit 2 naming both', async (t) => {
  const { dir, etc } = mulchInstall(t, (data) => `data_path = ${JSON.stringify(data)}\nproxy_listen_http = "127.0.0.1:0"\n`)
  const own = join(dir, 'vmfront.toml')
  writeFileSync(own, '[listen]\nadmin = "127.0.0.1:0"\nhttps = "127.0.0.1:0"\n[acme]\nenabled = false\n[timeouts]\nconnect = "2s"\n')
  const config = loadMulchConfig(etc, own)
  t.equal(config.listen.http?.port, 0, 'from mulchd.toml')
  t.equal(config.listen.https?.host, '127.0.0.1', 'mulchd.toml is silent: --config may set it')
  t.equal(config.timeouts.connectMs, 2000, 'vmfront-only setting')
  t.equal(config.acme.enabled, false)
  // What `vmfront check --mulch-config` reports with: each setting at the file, line and key written.
  const { sources } = loadMulchConfigWithSources(etc, own)
  t.same(sources.locate('listen.http'), { file: join(etc, 'mulchd.toml'), line: 2, key: 'proxy_listen_http' })
  t.same(sources.locate('routes_file'), { file: join(etc, 'mulchd.toml'), line: 1, key: 'data_path' })
  t.same(sources.locate('timeouts.connect'), { file: own, line: 7, key: 'timeouts.connect' })

  writeFileSync(own, '[listen]\nadmin = "127.0.0.1:0"\nhttp = "127.0.0.1:8080"\n')
  const r = runCli(['proxy', '--mulch-config', etc, '--config', own])
  t.equal(r.status, 2)
  t.match(r.stderr, own, 'names the vmfront file')
  t.match(r.stderr, join(etc, 'mulchd.toml'), 'and the Mulch file')
  t.match(r.stderr, /listen\.http \(line 3\): is also given by .*\(proxy_listen_http, line 2\)/)

  // What only vmfront's checker finds in a Mulch value is still reported at the Mulch key and line.
  writeFileSync(join(etc, 'mulchd.toml'), `data_path = ${JSON.stringify(join(dir, 'data'))}\nproxy_listen_http = "nonsense"\n[[proxy_rate]]\nname = "default"\nconcurrent_max_requests = 2\nvip_list = ["not-an-ip"]\n`)
  const attributed = problemsOf(() => loadMulchConfig(etc))
  t.same(attributed.map((p) => p.path), ['proxy_listen_http (line 2) (vmfront listen.http)', 'proxy_rate[0].vip_list[0] (line 6) (vmfront rate_profile[0].vip_list[0])'])

  writeFileSync(join(etc, 'mulchd.toml'), 'proxy_listen_http = "127.0.0.1:0"\nproxy_rate_limit = 3\n')
  const bad = runCli(['proxy', '--mulch-config', join(etc, 'mulchd.toml')])
  t.equal(bad.status, 2, 'an unknown proxy_ key: exit 2')
  t.match(bad.stderr, /mulchd\.toml:\n {2}proxy_rate_limit \(line 2\): is not a setting mulch-proxy knows/)
  t.notMatch(bad.stderr, /undefined|at .*\.ts:/, 'no undefined, no stack')
})

t.test('a real proxy started with --mulch-config serves mulchd\'s files beside an unchanged mulchd', async (t) => {
  const vm = await startBackend(t)
  const { dir, etc, data } = mulchInstall(t, (dataPath) => REAL_TOML
    .replace('data_path = "/var/lib/mulch"', `data_path = ${JSON.stringify(dataPath)}`)
    .replace('proxy_listen_http = ":80"', 'proxy_listen_http = "127.0.0.1:0"')
    .replace('proxy_listen_https = ":443"', 'proxy_listen_https = "127.0.0.1:0"')
    // no parent to register with in this test: chaining is the chain helpers' tests
    .replace('proxy_chain_mode = "child"', 'proxy_chain_mode = ""'))
  chmodSync(data, 0o750)
  writeFileSync(join(etc, 'templates/error_page.html'), '<title>Error $ERROR_CODE</title><p>$ERROR_MESSAGE</p>\n')
  const domains = JSON.parse(readFileSync(join(FIXTURES, 'mulch-proxy-domains.db'), 'utf8')) as Record<string, Record<string, unknown>>
  for (const entry of Object.values(domains)) {
    if (entry.DestinationHost !== '') Object.assign(entry, { DestinationHost: '127.0.0.1', DestinationPort: vm.port })
  }
  writeFileSync(join(data, 'mulch-proxy-domains.db'), JSON.stringify(domains) + '\n')
  const own = join(dir, 'vmfront.toml')
  writeFileSync(own, '[listen]\nadmin = "127.0.0.1:0"\n[acme]\nenabled = false\n')

  const child = spawn(NODE, [CLI, 'proxy', '--mulch-config', etc, '--config', own], { stdio: ['ignore', 'pipe', 'pipe'] })
  const proc = followProcess(t, child, 'proxy')
  const started = await proc.waitForLog((l) => l.msg === 'vmfront proxy started', 15_000)
  const ports = started.listeners as Record<string, number>
  t.equal(started.routes, 4, 'the real domains file loaded at start')
  t.ok(proc.logs.some((l) => l.msg === 'config warning' && /proxy_chain_psk/.test(String(l.warning))), 'chain keys without a mode: warned as ignored')

  const pid = readFileSync(join(data, 'mulch-proxy-last.pid'), 'utf8')
  t.equal(pid, String(child.pid), 'mulch-proxy-last.pid holds the PID, no newline (strconv.Atoi)')
  t.equal(statSync(data).mode & 0o777, 0o750, 'data_path keeps its mode')

  const get = async (host: string): Promise<{ status: number, body: string, location: unknown }> => {
    const res = await request(`http://127.0.0.1:${ports.http}/x`, { headers: { host } })
    return { status: res.statusCode, body: await res.body.text(), location: res.headers.location }
  }
  t.equal((await get('api.example.com')).status, 200)
  const app = await get('app.example.com')
  t.equal(app.status, 308)
  t.equal(app.location, `https://app.example.com:${ports.https}/x`)
  t.equal((await get('old.example.com')).status, 302)
  const missing = await get('nobody.example.com')
  t.equal(missing.status, 404)
  t.equal(missing.body, '<title>Error 404</title><p>No site is served at this address</p>\n', 'Mulch\'s template and placeholders')

  // mulchd rewrites the file in place (O_TRUNC, not atomically), then sends SIGHUP.
  domains['new.example.com'] = { ...domains['api.example.com'], Name: 'new.example.com', VMName: 'new' }
  writeFileSync(join(data, 'mulch-proxy-domains.db'), JSON.stringify(domains) + '\n')
  const from = proc.logs.length
  process.kill(Number(pid), 'SIGHUP')
  const reloaded = await proc.waitForLog((l) => l.msg === 'routes loaded', 10_000, from)
  t.equal(reloaded.routes, 5)
  t.equal((await get('new.example.com')).status, 200, 'the reload reached the proxy through the PID file')

  t.equal(await proc.stop('SIGTERM'), 0, 'SIGTERM: clean exit')
})
