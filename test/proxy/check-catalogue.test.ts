// `vmfront check` on a catalogue of broken configurations: each problem compared in
// full (file, line, key, message, severity), one typo reported once (no cascade),
// and no JavaScript internals ("undefined", "[object Object]", stack frames) in any message.
import t from 'tap'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { checkConfigFile, checkProxyConfig, type CheckProblem } from '../../proxy/check.ts'
import { parseConfigText } from '../../proxy/config.ts'
import { issueTestCert, type TestCert } from '../helpers/pebble.ts'
import { tempDir } from '../helpers/proxy-process.ts'

const ca = issueTestCert({ isCa: true, commonName: 'Check CA' })
const site = issueTestCert({ issuer: ca, dnsNames: ['site.test', 'www.site.test'] })
const other = issueTestCert({ issuer: ca, dnsNames: ['other.test'] })
// X.509 times have whole seconds: a date the certificate keeps exactly.
const soonDate = new Date(Math.floor(Date.now() / 1000) * 1000 + 5 * 86_400_000 + 3_600_000)
const soon = issueTestCert({ issuer: ca, dnsNames: ['soon.test'], notAfter: soonDate })
const expired = issueTestCert({ issuer: ca, dnsNames: ['old.test'], notBefore: new Date('2020-01-01T00:00:00Z'), notAfter: new Date('2020-02-01T00:00:00Z') })

const BASE = `data_dir = "data"
routes_file = "routes.json"
pid_file = "run/proxy.pid"

[listen]
http = "127.0.0.1:18080"
https = "127.0.0.1:18443"
admin = "127.0.0.1:19180"
`
const ROUTES = JSON.stringify({ version: 1, routes: [{ domain: 'site.test', target: 'http://127.0.0.1:8081' }] }, null, 2) + '\n'

interface Case {
  name: string
  toml: string
  files?: Record<string, string>
  expected: Array<Omit<CheckProblem, 'file'> & { file: string }>
}

function certFiles (cert: TestCert, name: string, key: TestCert = cert): Record<string, string> {
  return { [`${name}.crt`]: cert.certPem + ca.certPem, [`${name}.key`]: key.keyPem }
}

function extra (entries: Array<{ domains: string[], name: string }>): string {
  return entries.map((e) => `[[certificate]]\ndomains = ${JSON.stringify(e.domains)}\ncertfile = "${e.name}.crt"\nkeyfile = "${e.name}.key"\n`).join('\n')
}

const E = 'error' as const
const W = 'warning' as const

const CASES: Case[] = [
  { name: 'a valid configuration', toml: BASE, expected: [] },
  // --- TOML syntax, one case per kind of error smol-toml reports
  { name: 'syntax: unfinished string', toml: 'data_dir = "data\n', expected: [
      { file: '<dir>/c.toml', line: 1, key: 'data_dir', message: 'invalid TOML at line 1, column 17: unfinished string (the closing quote is missing on this line)', severity: E }
    ] },
  { name: 'syntax: missing value', toml: BASE.replace('admin = "127.0.0.1:19180"', 'admin ='), expected: [
      { file: '<dir>/c.toml', line: 8, key: 'listen.admin', message: 'invalid TOML at line 8, column 8: invalid value', severity: E }
    ] },
  { name: 'syntax: unclosed table header', toml: '[listen\nhttp = "127.0.0.1:18080"\n', expected: [
      { file: '<dir>/c.toml', line: 1, key: '', message: 'invalid TOML at line 1, column 8: illegal character in key', severity: E }
    ] },
  { name: 'syntax: key defined twice', toml: BASE + 'http = "127.0.0.1:18081"\n', expected: [
      { file: '<dir>/c.toml', line: 9, key: 'listen.http', message: 'invalid TOML at line 9, column 1: trying to redefine an already defined table or value', severity: E }
    ] },
  { name: 'syntax: table defined twice', toml: BASE + '[listen]\n', expected: [
      { file: '<dir>/c.toml', line: 9, key: 'listen', message: 'invalid TOML at line 9, column 2: trying to redefine an already defined table or value', severity: E }
    ] },
  { name: 'syntax: bad escape', toml: 'data_dir = "C:\\data"\n', expected: [
      { file: '<dir>/c.toml', line: 1, key: 'data_dir', message: 'invalid TOML at line 1, column 16: unrecognised escape sequence', severity: E }
    ] },
  { name: 'syntax: text after a value', toml: BASE.replace('"127.0.0.1:19180"', '"127.0.0.1:19180" admin'), expected: [
      { file: '<dir>/c.toml', line: 8, key: 'listen.admin', message: 'invalid TOML at line 8, column 27: each key-value declaration must be followed by an end-of-line', severity: E }
    ] },
  { name: 'syntax: bare word as value', toml: '[acme]\nenabled = yes\n', expected: [
      { file: '<dir>/c.toml', line: 2, key: 'acme.enabled', message: 'invalid TOML at line 2, column 11: invalid value', severity: E }
    ] },
  // --- keys and values
  { name: 'unknown keys', toml: BASE.replace('data_dir', 'dta_dir') + 'htps = "x"\n', expected: [
      { file: '<dir>/c.toml', line: 1, key: 'dta_dir', message: 'is not a known key: did you mean "data_dir"?', severity: E },
      { file: '<dir>/c.toml', line: 9, key: 'listen.htps', message: 'is not a known key: did you mean "https"?', severity: E }
    ] },
  { name: 'wrong type', toml: BASE + '[acme]\nenabled = "yes"\n', expected: [
      { file: '<dir>/c.toml', line: 10, key: 'acme.enabled', message: 'must be true or false, not string "yes"', severity: E }
    ] },
  { name: 'bad duration', toml: BASE + '[timeouts]\nconnect = "5 seconds"\n', expected: [
      { file: '<dir>/c.toml', line: 10, key: 'timeouts.connect', message: '"5 seconds" is not a duration (use ms, s, m, h or d, e.g. "10s")', severity: E }
    ] },
  { name: 'bad address', toml: BASE.replace('"127.0.0.1:18080"', '"localhost"'), expected: [
      { file: '<dir>/c.toml', line: 6, key: 'listen.http', message: '"localhost" is not host:port', severity: E }
    ] },
  { name: 'port conflict: admin on the http address', toml: BASE.replace('"127.0.0.1:19180"', '"127.0.0.1:18080"'), expected: [
      { file: '<dir>/c.toml', line: 8, key: 'listen.admin', message: '"127.0.0.1:18080" takes the port of listen.http = "127.0.0.1:18080": two listeners cannot share port 18080; give each its own port', severity: E }
    ] },
  { name: 'port conflict: a wildcard covers another listener', toml: BASE.replace('"127.0.0.1:18443"', '"0.0.0.0:18080"'), expected: [
      { file: '<dir>/c.toml', line: 7, key: 'listen.https', message: '"0.0.0.0:18080" takes the port of listen.http = "127.0.0.1:18080": two listeners cannot share port 18080; give each its own port', severity: E }
    ] },
  { name: 'port conflict: the chain API on the https port', toml: BASE + '[chain]\nmode = "parent"\nparent_url = "http://127.0.0.1:18443"\npsk = "0123456789abcdef"\n', expected: [
      { file: '<dir>/c.toml', line: 11, key: 'chain.parent_url', message: 'the chain API address of chain.parent_url (127.0.0.1:18443) takes the port of listen.https = "127.0.0.1:18443": two listeners cannot share port 18443; give each its own port', severity: E }
    ] },
  { name: 'chain mode typo: reported once, no cascade', toml: BASE + '[chain]\nmode = "prent"\npsk = "short"\n', expected: [
      { file: '<dir>/c.toml', line: 10, key: 'chain.mode', message: 'must be one of "none", "parent", "child", not string "prent"', severity: E }
    ] },
  { name: 'short psk', toml: BASE + '[chain]\nmode = "parent"\nparent_url = "http://127.0.0.1:19000"\npsk = "short"\n', expected: [
      { file: '<dir>/c.toml', line: 12, key: 'chain.psk', message: 'must be at least 16 characters when chain.mode is "parent"', severity: E }
    ] },
  { name: 'acme needs http, which is invalid: reported once', toml: BASE.replace('"127.0.0.1:18080"', '"127.0.0.1:80800"') + '[acme]\nenabled = true\n', expected: [
      { file: '<dir>/c.toml', line: 6, key: 'listen.http', message: '"127.0.0.1:80800" has a port over 65535', severity: E }
    ] },
  { name: 'bad URLs', toml: BASE + '[acme]\ndirectory_url = "http://acme.test/directory"\n[chain]\nmode = "child"\nparent_url = "parent:9000"\nchild_url = "http://10.0.0.2:8080"\npsk = "0123456789abcdef"\n', expected: [
      { file: '<dir>/c.toml', line: 10, key: 'acme.directory_url', message: 'must be https:// (RFC 8555 §6.1), got "http://acme.test/directory"', severity: E },
      { file: '<dir>/c.toml', line: 13, key: 'chain.parent_url', message: '"parent:9000" must use http:// or https://', severity: E }
    ] },
  { name: 'chain URLs with more than scheme://host:port', toml: BASE + '[chain]\nmode = "child"\nparent_url = "https://parent.test:9443/api/"\nchild_url = "http://user:pw@10.0.0.2:8080"\npsk = "0123456789abcdef"\n', expected: [
      { file: '<dir>/c.toml', line: 11, key: 'chain.parent_url', message: '"https://parent.test:9443/api/": only scheme://host:port is used, the rest is ignored (expected https://parent.test:9443)', severity: W },
      { file: '<dir>/c.toml', line: 12, key: 'chain.child_url', message: '"http://user:pw@10.0.0.2:8080" must not carry a user name or password (chain.psk authenticates)', severity: E }
    ] },
  { name: 'not a URL, and a directory shortcut typo', toml: BASE + '[acme]\ndirectory_url = "letsencrypt-stagin"\n[chain]\nmode = "parent"\nparent_url = "http://[::1:9000"\npsk = "0123456789abcdef"\n', expected: [
      { file: '<dir>/c.toml', line: 10, key: 'acme.directory_url', message: 'not a URL nor one of letsencrypt, letsencrypt-staging: "letsencrypt-stagin"', severity: E },
      { file: '<dir>/c.toml', line: 13, key: 'chain.parent_url', message: '"http://[::1:9000" is not a URL', severity: E }
    ] },
  // --- files the configuration names
  { name: 'missing extra certificate file', toml: BASE + '[tls]\nextra_certs_file = "extra.toml"\n', files: { 'extra.toml': extra([{ domains: ['site.test'], name: 'nope' }]) }, expected: [
      { file: '<dir>/extra.toml', line: 3, key: 'certificate[0].certfile', message: 'cannot read <dir>/nope.crt: no such file or directory', severity: E },
      { file: '<dir>/extra.toml', line: 4, key: 'certificate[0].keyfile', message: 'cannot read <dir>/nope.key: no such file or directory', severity: E }
    ] },
  { name: 'certificate and key do not match', toml: BASE + '[tls]\nextra_certs_file = "extra.toml"\n', files: { 'extra.toml': extra([{ domains: ['site.test'], name: 'site' }]), ...certFiles(site, 'site', other) }, expected: [
      { file: '<dir>/extra.toml', line: 1, key: 'certificate[0]', message: '<dir>/site.crt / <dir>/site.key: private key does not match the certificate', severity: E }
    ] },
  { name: 'expired certificate', toml: BASE + '[tls]\nextra_certs_file = "extra.toml"\n', files: { 'extra.toml': extra([{ domains: ['old.test'], name: 'old' }]), ...certFiles(expired, 'old') }, expected: [
      { file: '<dir>/extra.toml', line: 3, key: 'certificate[0].certfile', message: '<dir>/old.crt expired on 2020-02-01T00:00:00.000Z', severity: E }
    ] },
  { name: 'certificate does not cover its domains', toml: BASE + '[tls]\nextra_certs_file = "extra.toml"\n', files: { 'extra.toml': '# user certificates\n\n' + extra([{ domains: ['site.test'], name: 'site' }, { domains: ['other.test', 'more.test'], name: 'other' }]), ...certFiles(site, 'site'), ...certFiles(other, 'other') }, expected: [
      { file: '<dir>/extra.toml', line: 9, key: 'certificate[1].domains', message: '<dir>/other.crt does not cover more.test (its names: other.test)', severity: E }
    ] },
  { name: 'every entry of extra_certs_file checked, an expiring certificate warned about', toml: BASE + '[tls]\nextra_certs_file = "extra.toml"\n', files: { 'extra.toml': extra([{ domains: ['soon.test'], name: 'soon' }, { domains: ['old.test', 'Bad_Name!'], name: 'old' }, { domains: ['site.test', 'soon.test'], name: 'site' }]) + 'color = "blue"\n', ...certFiles(soon, 'soon'), ...certFiles(expired, 'old'), ...certFiles(site, 'site') }, expected: [
      { file: '<dir>/extra.toml', line: 3, key: 'certificate[0].certfile', message: `<dir>/soon.crt expires on ${soonDate.toISOString()}, in 5 days`, severity: W },
      { file: '<dir>/extra.toml', line: 7, key: 'certificate[1].domains', message: 'invalid domain "Bad_Name!"', severity: E },
      { file: '<dir>/extra.toml', line: 8, key: 'certificate[1].certfile', message: '<dir>/old.crt expired on 2020-02-01T00:00:00.000Z', severity: E },
      { file: '<dir>/extra.toml', line: 12, key: 'certificate[2].domains', message: '<dir>/site.crt does not cover soon.test (its names: site.test, www.site.test)', severity: E },
      { file: '<dir>/extra.toml', line: 12, key: 'certificate[2].domains', message: 'domain soon.test is listed twice', severity: E },
      { file: '<dir>/extra.toml', line: 15, key: 'certificate[2].color', message: 'unknown key "color"', severity: E }
    ] },
  { name: 'missing extra_certs_file', toml: BASE + '[tls]\nextra_certs_file = "extra.toml"\n', expected: [
      { file: '<dir>/c.toml', line: 10, key: 'tls.extra_certs_file', message: 'cannot read <dir>/extra.toml: no such file or directory', severity: E }
    ] },
  { name: 'bad route file', toml: BASE, files: { 'routes.json': '{\n  "version": 1,\n  "routes": [\n    { "domain": "site.test", "target": "http://127.0.0.1:8081" },\n    { "domain": "Bad.test", "target": "ftp://x" },\n    { "target": "http://127.0.0.1:1" }\n  ]\n}\n' }, expected: [
      { file: '<dir>/routes.json', line: 5, key: '$.routes[1].domain', message: '"Bad.test" must be lower-case (write "bad.test")', severity: E },
      { file: '<dir>/routes.json', line: 5, key: '$.routes[1].target', message: '"ftp://x" must use http:// (the VM side speaks plain HTTP)', severity: E },
      { file: '<dir>/routes.json', line: 6, key: '$.routes[2].domain', message: 'is required', severity: E }
    ] },
  { name: 'bad port file (Mulch format), located by line', toml: BASE.replace('pid_file', 'ports_file = "ports.db"\npid_file'), files: { 'ports.db': '{\n  "2222": {\n    "ListenAddr": { "IP": "0.0.0.0", "Port": 2222, "Zone": "" },\n    "Forwards": {\n      "*": { "Dest": { "IP": "10.0.0.5", "Port": 0, "Zone": "" }, "PROXYProtoPort": 0 }\n    }\n  }\n}\n' }, expected: [
      { file: '<dir>/ports.db', line: 5, key: '$["2222"].Forwards["*"].Dest.Port', message: 'must be a port number (1-65535), not 0', severity: E }
    ] },
  { name: 'missing port file: a warning only', toml: BASE.replace('pid_file', 'ports_file = "none.db"\npid_file'), expected: [
      { file: '<dir>/c.toml', line: 3, key: 'ports_file', message: '<dir>/none.db does not exist: no port is forwarded until it is written (then SIGHUP)', severity: W }
    ] },
  { name: 'route file is not JSON', toml: BASE, files: { 'routes.json': '{\n  "version": 1,\n  "routes": [,]\n}\n' }, expected: [
      { file: '<dir>/routes.json', line: 3, key: '$', message: 'is not valid JSON at line 3, column 14: Unexpected token \',\'', severity: E }
    ] },
  { name: 'missing route file: a warning only', toml: BASE.replace('routes.json', 'none.json'), expected: [
      { file: '<dir>/c.toml', line: 2, key: 'routes_file', message: '<dir>/none.json does not exist: the proxy would start with no routes, and load the file on SIGHUP once it is written', severity: W }
    ] },
  { name: 'unknown rate profile in the route file: a warning', toml: BASE, files: { 'routes.json': JSON.stringify({ version: 1, routes: [{ domain: 'site.test', target: 'http://127.0.0.1:8081', rate_profile: 'vip' }] }, null, 2) }, expected: [
      { file: '<dir>/routes.json', line: 7, key: '$.routes[0].rate_profile', message: 'unknown rate profile "vip": the route would use "default" (the [[rate_profile]] names are: default)', severity: W }
    ] },
  { name: 'missing error template', toml: BASE + '[error_pages]\ntemplate = "error.html"\n', expected: [
      { file: '<dir>/c.toml', line: 10, key: 'error_pages.template', message: 'cannot read <dir>/error.html: no such file or directory', severity: E }
    ] },
  { name: 'every problem at once, across files', toml: BASE.replace('"127.0.0.1:19180"', '"127.0.0.1:18080"') + '[log]\nlevel = "loud"\n[tls]\nextra_certs_file = "extra.toml"\n[error_pages]\ntemplate = "error.html"\n', files: { 'extra.toml': extra([{ domains: ['site.test'], name: 'nope' }]), 'routes.json': '{"version":1,"routes":[{"domain":"x..test","target":"http://127.0.0.1:1"}]}' }, expected: [
      { file: '<dir>/c.toml', line: 8, key: 'listen.admin', message: '"127.0.0.1:18080" takes the port of listen.http = "127.0.0.1:18080": two listeners cannot share port 18080; give each its own port', severity: E },
      { file: '<dir>/c.toml', line: 10, key: 'log.level', message: 'must be one of "debug", "info", "warn", "error", not string "loud"', severity: E },
      { file: '<dir>/c.toml', line: 14, key: 'error_pages.template', message: 'cannot read <dir>/error.html: no such file or directory', severity: E },
      { file: '<dir>/routes.json', line: 1, key: '$.routes[0].domain', message: '"x..test" has an empty label', severity: E },
      { file: '<dir>/extra.toml', line: 3, key: 'certificate[0].certfile', message: 'cannot read <dir>/nope.crt: no such file or directory', severity: E },
      { file: '<dir>/extra.toml', line: 4, key: 'certificate[0].keyfile', message: 'cannot read <dir>/nope.key: no such file or directory', severity: E }
    ] }
]

t.test('check: a catalogue of broken configurations, each message in full', async (t) => {
  t.ok(CASES.length >= 15)
  for (const c of CASES) {
    const dir = tempDir(t, 'vmfront-check-')
    writeFileSync(join(dir, 'routes.json'), ROUTES)
    for (const [name, text] of Object.entries(c.files ?? {})) writeFileSync(join(dir, name), text)
    const file = join(dir, 'c.toml')
    writeFileSync(file, c.toml)
    const report = await checkConfigFile(file)
    const got = report.problems.map((p) => ({ ...p, file: p.file.replaceAll(dir, '<dir>'), message: p.message.replaceAll(dir, '<dir>') }))
    if (process.env.CHECK_PRINT === '1') console.log(JSON.stringify([c.name, got]))
    t.same(got, c.expected, c.name)
    t.equal(report.ok, !c.expected.some((p) => p.severity === 'error'), `${c.name}: ok`)
    for (const p of report.problems) {
      t.notMatch(p.message, /undefined|\[object Object\]|NaN| {4}at |Error:/, `${c.name}: no JavaScript internals in "${p.message}"`)
      t.notMatch(p.key, /undefined/, `${c.name}: key`)
    }
  }
})

t.test('checkProxyConfig takes a config mapped from another file, located by that file\'s own keys', async (t) => {
  // What --mulch-config will do: map mulchd.toml to a ProxyConfig, and say where each key came from.
  const dir = tempDir(t, 'vmfront-check-')
  const config = parseConfigText(BASE.replace('"127.0.0.1:18443"', '"127.0.0.1:18080"').replace('routes.json', join(dir, 'none.json')), join(dir, 'mapped.toml'))
  const keys: Record<string, string> = { 'listen.http': 'proxy_listen_http', 'listen.https': 'proxy_listen_https', routes_file: 'data_path' }
  const report = await checkProxyConfig(config, { locate: (key) => ({ file: '/etc/mulch/mulchd.toml', line: 7, key: keys[key] ?? key }) })
  t.equal(report.ok, false)
  t.same(report.problems.map((p) => ({ ...p, message: p.message.replaceAll(dir, '<dir>') })), [
    { file: '/etc/mulch/mulchd.toml', line: 7, key: 'proxy_listen_https', message: '"127.0.0.1:18080" takes the port of proxy_listen_http = "127.0.0.1:18080": two listeners cannot share port 18080; give each its own port', severity: E },
    { file: '/etc/mulch/mulchd.toml', line: 7, key: 'data_path', message: '<dir>/none.json does not exist: the proxy would start with no routes, and load the file on SIGHUP once it is written', severity: W }
  ])
})
