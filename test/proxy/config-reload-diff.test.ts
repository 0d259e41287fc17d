// SIGHUP's TOML diff (SPEC §12): every key of the TOML is classified live or
// restart, a change is reported under its dotted key, and a restart key stays
// reported until a restart applies it; a bad file's problems carry file, line and key.
import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { CONFIG_SPEC, loadConfig, parseConfigText } from '../../proxy/config.ts'
import { diffConfig, KEY_RULES, locateConfigProblems } from '../../proxy/config-reload.ts'
import { tempDir } from '../helpers/proxy-process.ts'

/** `top`: top-level keys (before any table). */
const config = (extra: string, top = ''): ReturnType<typeof parseConfigText> => parseConfigText(`data_dir = "/tmp/x"\n${top}${extra.startsWith('[listen]') ? '' : '[listen]\nhttp = "127.0.0.1:8080"\n'}${extra}`, '/etc/vmfront/proxy.toml')

t.test('every key of the TOML is classified, once', async (t) => {
  const keys = [
    ...Object.keys(CONFIG_SPEC.top),
    ...Object.entries(CONFIG_SPEC.sections).flatMap(([section, spec]) => Object.keys(spec).map((k) => `${section}.${k}`)),
    'rate_profile'
  ]
  t.same(KEY_RULES.map((r) => r.key).sort(), keys.sort())
})

t.test('changes are classified live or restart', async (t) => {
  const started = config('')
  const cases: Array<[string, string, { live: string[], restart: string[] }, string?]> = [
    ['nothing', '', { live: [], restart: [] }],
    ['access log off', '[log]\naccess = false\n', { live: ['log.access'], restart: [] }],
    ['log level', '[log]\nlevel = "debug"\n', { live: ['log.level'], restart: [] }],
    ['trusted proxy', '[headers]\ntrusted_proxies = ["10.0.0.0/8"]\n', { live: ['headers.trusted_proxies'], restart: [] }],
    ['new rate profile', '[[rate_profile]]\nname = "strict"\nconcurrent_max_requests = 2\n', { live: ['rate_profile'], restart: [] }],
    ['listener moved', '[listen]\nhttp = "127.0.0.1:8081"\n', { live: ['listen.http'], restart: [] }],
    ['timeouts and limits', '[timeouts]\nconnect = "2s"\nclient_idle = "30s"\n[limits]\nmax_header_bytes = 8192\n', { live: ['timeouts.connect', 'timeouts.client_idle', 'limits.max_header_bytes'], restart: [] }],
    ['workers', '[server]\nworkers = 4\n', { live: ['server.workers'], restart: [] }],
    ['pid file', '', { live: [], restart: ['pid_file'] }, 'pid_file = "/run/other.pid"\n'],
    ['acme and chain', '[acme]\nemail = "a@example.com"\n[chain]\nping_interval = "3s"\nname = "other"\n', { live: ['chain.ping_interval'], restart: ['acme.email', 'chain.name'] }],
    ['chain PSK and keepalive', '[chain]\npsk = "another-psk-0123456789"\nping_timeout = "9s"\n', { live: ['chain.psk', 'chain.ping_timeout'], restart: [] }],
    ['live and restart together', '[log]\naccess = false\n[timeouts]\ntcp_idle = "5m"\n', { live: ['log.access'], restart: ['timeouts.tcp_idle'] }]
  ]
  for (const [name, extra, want, top] of cases) {
    const next = config(extra, top)
    const diff = diffConfig(started, started, next)
    t.same({ live: [...diff.live], restart: [...diff.restart] }, want, name)
  }
})

t.test('a restart key stays reported until a restart; live keys compare with what is served', async (t) => {
  const started = config('')
  const served = config('[log]\naccess = false\n', 'pid_file = "/run/other.pid"\n')
  const diff = diffConfig(started, served, served)
  t.same(diff.live, [], 'the live change is served already')
  t.same(diff.restart, ['pid_file'], 'the restart key is still not applied')
})

t.test('the problems of a bad TOML name file, line and key', async (t) => {
  const dir = tempDir(t)
  const file = join(dir, 'proxy.toml')
  writeFileSync(file, 'data_dir = "/tmp/x"\n\n[log]\naccess = true\nlevel = "loud"\n')
  let err: unknown
  try { loadConfig(file) } catch (e) { err = e }
  const problems = locateConfigProblems(err)
  t.equal(problems.length, 1)
  t.match(problems[0], { file, line: 5, key: 'log.level', message: /must be one of/ })

  writeFileSync(file, 'data_dir = "/tmp/x"\n[log]\naccess = tru\n')
  err = undefined
  try { loadConfig(file) } catch (e) { err = e }
  t.match(locateConfigProblems(err)[0], { file, line: 3, key: 'log.access', message: /invalid TOML/ }, 'a syntax error: its line and the key written there')

  err = undefined
  try { loadConfig(join(dir, 'missing.toml')) } catch (e) { err = e }
  t.match(locateConfigProblems(err)[0], { file: join(dir, 'missing.toml'), message: /cannot read the config file/ }, 'an unreadable file is named')
})
