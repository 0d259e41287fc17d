// Chaining over TLS: an https:// chain API and an https:// child URL (h2 by ALPN), with
// certificates from extra_certs_file signed by a test CA the processes trust.
import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { routesDoc, startProxyProcess, tempDir } from '../helpers/proxy-process.ts'
import { deadPort, startBackend } from '../helpers/backend.ts'
import { issueTestCert } from '../helpers/pebble.ts'
import { PSK, get, timings, until } from './chain-helpers.ts'

t.test('parent and child over https', async (t) => {
  const dir = tempDir(t)
  const ca = issueTestCert({ isCa: true })
  const leaf = issueTestCert({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], issuer: ca })
  writeFileSync(join(dir, 'ca.pem'), ca.certPem)
  writeFileSync(join(dir, 'leaf.pem'), leaf.certPem)
  writeFileSync(join(dir, 'leaf.key'), leaf.keyPem, { mode: 0o600 })
  writeFileSync(join(dir, 'extra.toml'), `[[certificate]]\ndomains = ["localhost"]\ncertfile = ${JSON.stringify(join(dir, 'leaf.pem'))}\nkeyfile = ${JSON.stringify(join(dir, 'leaf.key'))}\n`)
  const env = { NODE_EXTRA_CA_CERTS: join(dir, 'ca.pem') }
  const tls = `[tls]\nextra_certs_file = ${JSON.stringify(join(dir, 'extra.toml'))}\n`
  const vm = await startBackend(t)
  const apiPort = await deadPort()
  const childPort = await deadPort()

  const parent = await startProxyProcess(t, { env, toml: `${tls}[chain]\nmode = "parent"\nparent_url = "https://localhost:${apiPort}"\npsk = "${PSK}"\n${timings()}` })
  const child = await startProxyProcess(t, {
    env,
    routes: routesDoc([{ domain: 'app.example.com', target: vm.origin }]),
    listen: `[listen]\nhttp = ""\nhttps = "127.0.0.1:${childPort}"\nadmin = "127.0.0.1:0"`,
    toml: `${tls}[chain]\nmode = "child"\nparent_url = "https://localhost:${apiPort}"\nchild_url = "https://localhost:${childPort}"\nname = "tls-child"\npsk = "${PSK}"\n${timings()}`
  })
  await child.waitForLog((l) => l.msg === 'chain registered with parent', 5000)
  const res = await until('the chained domain over TLS', async () => {
    const r = await get(parent.ports.http, 'app.example.com', '/over-tls')
    return r.status === 200 ? r : undefined
  })
  const seen = JSON.parse(res.body) as { headers: Record<string, string> }
  t.equal(seen.headers['x-forwarded-for'], '127.0.0.1, 127.0.0.1')
  const access = await child.waitForLog((l) => l.msg === 'access' && l.path === '/over-tls')
  t.equal(access.proto, '2.0', 'h2 over TLS to the child (it has no plain listener)')
  t.equal(access.status, 200)
})
