// mulchd's listen_https_domain (acme.extra_domains): mulchd calls https://<name>/ through
// the proxy, which orders the certificate on demand (no route names it); the proxy then
// writes data_dir/certs/<name> — key then chain, PEM, 0600 — the file mulchd's HTTPS API
// reads, as mulch-proxy's autocert cache did. A restart rewrites nothing it already wrote.
import t from 'tap'
import tls from 'node:tls'
import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto'
import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { startPebble, freePort, pollUntil } from '../helpers/pebble.ts'
import { startProxyProcess, routesDoc, tempDir } from '../helpers/proxy-process.ts'

function handshake (port: number, servername: string, ca: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ port, host: '127.0.0.1', servername, ca, rejectUnauthorized: false }, () => {
      resolve(s.authorized)
      s.destroy()
    })
    s.on('error', reject)
  })
}

t.test('the certificate of acme.extra_domains is written where mulchd reads it', async (t) => {
  const httpPort = await freePort()
  const pebble = await startPebble({ httpPort })
  t.teardown(() => pebble.stop())
  const dataDir = join(tempDir(t), 'data')
  const name = 'mulch-api.test'
  const options = {
    dataDir,
    routes: routesDoc([]),
    listen: `[listen]\nhttp = "127.0.0.1:${httpPort}"\nhttps = "127.0.0.1:0"\nadmin = "127.0.0.1:0"`,
    toml: `[acme]\nenabled = true\ndirectory_url = ${JSON.stringify(pebble.directoryUrl)}\nca_file = ${JSON.stringify(pebble.caFile)}\nemail = "ops@site.test"\nextra_domains = ["${name}"]`
  }
  const proxy = await startProxyProcess(t, options)
  const root = await pebble.rootPem()
  // mulchd's self-call: a handshake for its name starts the order.
  await pollUntil(async () => await handshake(proxy.ports.https, name, root), 30_000, `a Pebble certificate for ${name}`)
  const file = join(dataDir, 'certs', name)
  await pollUntil(() => { try { return statSync(file).isFile() } catch { return false } }, 10_000, `${file} written`)
  t.equal(statSync(file).mode & 0o777, 0o600, 'mode 0600: it holds the private key')
  const text = readFileSync(file, 'utf8')
  const blocks = [...text.matchAll(/-----BEGIN ([A-Z ]+)-----[\s\S]+?-----END \1-----/g)]
  t.match(blocks[0]?.[1], /PRIVATE KEY$/, 'the private key first, as mulchd parses it')
  t.ok(blocks.slice(1).length >= 1 && blocks.slice(1).every((b) => b[1] === 'CERTIFICATE'), 'then the certificate chain')
  const leaf = new X509Certificate(blocks[1][0])
  t.ok(leaf.checkHost(name), 'the leaf covers the name')
  t.ok(leaf.checkPrivateKey(createPrivateKey(blocks[0][0])), 'and matches the key')
  t.equal(createPublicKey(blocks[0][0]).asymmetricKeyType, leaf.publicKey.asymmetricKeyType)
  const mtime = statSync(file).mtimeMs
  t.equal(await proxy.stop(), 0)

  const again = await startProxyProcess(t, options)
  t.ok(await handshake(again.ports.https, name, root), 'served at once after a restart')
  await again.waitForLog((l) => l.msg === 'vmfront proxy started')
  t.equal(readFileSync(file, 'utf8'), text, 'same content')
  t.equal(statSync(file).mtimeMs, mtime, 'not rewritten: mulchd re-reads on a changed mtime only')
})
