// User certificates through the proxy: served by SNI, reloaded on SIGHUP (a bad file
// keeps the previous set), exported in metrics only for routed domains, and an invalid
// file at start exits 2 naming the file.
import t from 'tap'
import tls from 'node:tls'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { spawnSync } from 'node:child_process'
import { issueTestCert } from '../helpers/pebble.ts'
import { startProxyProcess, routesDoc, tempDir, metricValue, NODE, CLI } from '../helpers/proxy-process.ts'
import { startBackend } from '../helpers/backend.ts'

function peer (port: number, servername: string, ca: string): Promise<{ authorized: boolean, cn: string }> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ port, host: '127.0.0.1', servername, ca, rejectUnauthorized: false }, () => {
      resolve({ authorized: s.authorized, cn: String(s.getPeerCertificate().subject?.CN ?? '') })
      s.destroy()
    })
    s.on('error', reject)
  })
}

t.test('extra certificates', async (t) => {
  const dir = tempDir(t)
  const ca = issueTestCert({ isCa: true, commonName: 'vmfront test user CA' })
  const write = (name: string, domains: string[], notAfter?: Date): { cert: string, key: string } => {
    const leaf = issueTestCert({ issuer: ca, dnsNames: domains, notAfter, notBefore: notAfter === undefined ? undefined : new Date(notAfter.getTime() - 86400_000) })
    const cert = join(dir, `${name}.crt`)
    const key = join(dir, `${name}.key`)
    writeFileSync(cert, leaf.certPem)
    writeFileSync(key, leaf.keyPem, { mode: 0o600 })
    return { cert, key }
  }
  const routed = write('routed', ['routed.test'])
  const other = write('other', ['other.test'])
  const extra = join(dir, 'extra.toml')
  const entry = (domains: string[], c: { cert: string, key: string }): string => `[[certificate]]\ndomains = ${JSON.stringify(domains)}\ncertfile = ${JSON.stringify(c.cert)}\nkeyfile = ${JSON.stringify(c.key)}\n`
  writeFileSync(extra, entry(['routed.test'], routed) + entry(['other.test'], other))

  const vm = await startBackend(t)
  const proxy = await startProxyProcess(t, {
    routes: routesDoc([{ domain: 'routed.test', target: vm.origin }]),
    listen: '[listen]\nhttp = "127.0.0.1:0"\nhttps = "127.0.0.1:0"\nadmin = "127.0.0.1:0"',
    toml: `[tls]\nextra_certs_file = ${JSON.stringify(extra)}`
  })
  t.ok((await peer(proxy.ports.https, 'routed.test', ca.certPem)).authorized, 'the user certificate is served by SNI')
  const m = await proxy.metrics()
  t.ok((metricValue(m, 'vmfront_certificate_expiry_timestamp_seconds{domain="routed.test"}') ?? 0) > Date.now() / 1000, 'routed domain exported')
  t.notMatch(m, /other\.test/, 'a certificate for a name outside the route table is not a metric series')

  // A broken file on SIGHUP keeps the previous set.
  writeFileSync(extra, entry(['routed.test'], { cert: routed.cert, key: other.key }))
  const from = proxy.logs.length
  proxy.child.kill('SIGHUP')
  const failed = await proxy.waitForLog((l) => l.msg === 'extra certificates reload failed: keeping the previous set', 10_000, from)
  t.match(JSON.stringify(failed), 'extra.toml', 'the log names the file')
  t.ok((await peer(proxy.ports.https, 'routed.test', ca.certPem)).authorized, 'still served after the failed reload')

  // An invalid file at start: exit 2 naming the file.
  const configFile = join(proxy.dir, 'proxy.toml')
  const r = spawnSync(NODE, [CLI, 'proxy', '--config', configFile], { encoding: 'utf8', timeout: 20_000 })
  t.equal(r.status, 2)
  t.match(r.stderr, 'extra.toml')
})
