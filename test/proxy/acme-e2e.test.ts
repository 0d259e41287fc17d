// The proxy with ACME on, against a real Pebble: a routed domain gets a certificate
// chaining to Pebble's root; an unrouted SNI never causes an order; a restart reuses it.
import t from 'tap'
import tls from 'node:tls'
import { join } from 'node:path'
import { request } from 'undici'
import { startPebble, freePort, pollUntil } from '../helpers/pebble.ts'
import { startProxyProcess, routesDoc, metricValue, tempDir } from '../helpers/proxy-process.ts'
import { startBackend } from '../helpers/backend.ts'

interface Peer { issuer: string, serial: string, authorized: boolean }

function handshake (port: number, servername: string, ca: string): Promise<Peer> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ port, host: '127.0.0.1', servername, ca, rejectUnauthorized: false }, () => {
      const cert = s.getPeerCertificate()
      resolve({ issuer: String(cert.issuer?.CN ?? ''), serial: cert.serialNumber, authorized: s.authorized })
      s.destroy()
    })
    s.on('error', reject)
  })
}

t.test('ACME through the proxy against Pebble', async (t) => {
  const httpPort = await freePort()
  const pebble = await startPebble({ httpPort })
  t.teardown(() => pebble.stop())
  const vm = await startBackend(t)
  const dataDir = join(tempDir(t), 'data')
  const options = {
    dataDir,
    routes: routesDoc([{ domain: 'site.test', target: vm.origin, redirect_to_https: true }]),
    listen: `[listen]\nhttp = "127.0.0.1:${httpPort}"\nhttps = "127.0.0.1:0"\nadmin = "127.0.0.1:0"`,
    toml: `[acme]\nenabled = true\ndirectory_url = ${JSON.stringify(pebble.directoryUrl)}\nca_file = ${JSON.stringify(pebble.caFile)}\nemail = "ops@site.test"`
  }
  const proxy = await startProxyProcess(t, options)
  const root = await pebble.rootPem()

  const first = await handshake(proxy.ports.https, 'site.test', root)
  t.notOk(first.authorized, 'the first handshake completes on the self-signed fallback')
  let issued: Peer | undefined
  await pollUntil(async () => {
    issued = await handshake(proxy.ports.https, 'site.test', root)
    return issued.authorized
  }, 30_000, 'a Pebble certificate for site.test')
  t.ok(issued?.authorized, 'site.test is served a certificate chaining to Pebble\'s root')

  const stray = await handshake(proxy.ports.https, 'not-routed.test', root)
  t.notOk(stray.authorized, 'an unrouted SNI gets the fallback')

  const agent = new (await import('undici')).Agent({ connect: { ca: root, servername: 'site.test' } })
  t.teardown(() => agent.close())
  const res = await request(`https://127.0.0.1:${proxy.ports.https}/`, { headers: { host: 'site.test' }, dispatcher: agent })
  t.equal(res.statusCode, 200, 'a verified HTTPS request reaches the VM')
  await res.body.dump()

  const m = await proxy.metrics()
  t.equal(metricValue(m, 'vmfront_acme_orders_total{result="success"}'), 1, 'one order, for the routed domain only')
  t.ok((metricValue(m, 'vmfront_certificate_expiry_timestamp_seconds{domain="site.test"}') ?? 0) > Date.now() / 1000, 'expiry exported')
  t.notMatch(m, /not-routed\.test/)
  const status = await (await request(`http://127.0.0.1:${proxy.ports.admin}/status`)).body.json() as { certificates: Array<{ domain: string, source: string }> }
  t.ok(status.certificates.some((c) => c.domain === 'site.test' && c.source === 'acme'), '/status lists the certificate')

  t.equal(await proxy.stop(), 0)
  const again = await startProxyProcess(t, options)
  const reused = await handshake(again.ports.https, 'site.test', root)
  t.ok(reused.authorized, 'after a restart the stored certificate is served at once')
  t.equal(reused.serial, issued?.serial, 'the same certificate')
  t.equal(metricValue(await again.metrics(), 'vmfront_acme_orders_total{result="success"}'), 0, 'no new order after the restart')
})
