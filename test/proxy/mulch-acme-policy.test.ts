// A name mulchd accepts but DNS does not (`my_app.example.test`) is routed and
// never ordered from ACME (SPEC §10); a DNS name of the same file is. Real process,
// real TLS handshakes with SNI; the ACME directory is a dead port (orders fail, and
// the log line "ordering certificate" says which names were tried).
import t from 'tap'
import tls from 'node:tls'
import { request } from 'undici'
import { startProxyProcess } from '../helpers/proxy-process.ts'
import { startBackend, deadPort } from '../helpers/backend.ts'

function handshake (port: number, servername: string): Promise<void> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false }, () => { socket.end(); resolve() })
    socket.on('error', () => { resolve() })
  })
}

t.test('ACME orders only for DNS names of a Mulch file; "_" names are served without one', async (t) => {
  const vm = await startBackend(t)
  const dead = await deadPort()
  const entry = (name: string): Record<string, unknown> => ({ Name: name, VMName: 'vm', RedirectTo: '', RedirectCode: 0, DestinationHost: '127.0.0.1', DestinationPort: vm.port, RedirectToHTTPS: false, RateProfile: '', TargetURL: '', Chained: false })
  const proxy = await startProxyProcess(t, {
    routes: JSON.stringify({ 'my_app.example.test': entry('my_app.example.test'), 'ok.example.test': entry('ok.example.test') }),
    listen: '[listen]\nhttp = "127.0.0.1:0"\nhttps = "127.0.0.1:0"\nadmin = "127.0.0.1:0"',
    // extra_domains: what --mulch-config maps listen_https_domain (mulchd's API host) to.
    toml: `[acme]\nenabled = true\ndirectory_url = "https://127.0.0.1:${dead}/directory"\nextra_domains = ["api.mulch.test"]\n`
  })
  await handshake(proxy.ports.https, 'my_app.example.test')
  await handshake(proxy.ports.https, 'not-routed.example.test')
  await handshake(proxy.ports.https, 'ok.example.test')
  await handshake(proxy.ports.https, 'api.mulch.test')
  await proxy.waitForLog((l) => l.msg === 'ordering certificate' && l.domain === 'ok.example.test', 15_000)
  await proxy.waitForLog((l) => l.msg === 'ordering certificate' && l.domain === 'api.mulch.test', 15_000)
  const ordered = proxy.logs.filter((l) => l.msg === 'ordering certificate').map((l) => l.domain)
  t.notOk(ordered.includes('my_app.example.test'), `never ordered for the "_" name (ordered: ${ordered.join(', ')})`)
  t.notOk(ordered.includes('not-routed.example.test'), 'nor for a name neither routed nor listed')
  t.ok(ordered.includes('api.mulch.test'), 'acme.extra_domains (listen_https_domain) may be ordered without a route')

  const res = await request(`http://127.0.0.1:${proxy.ports.http}/`, { headers: { host: 'my_app.example.test' } })
  t.equal(res.statusCode, 200, 'and it is served')
  await res.body.dump()
})
