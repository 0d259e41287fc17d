// The https listener's TLS policy: TLS 1.2 only with ECDHE and AEAD suites (no CBC: LUCKY13),
// TLS 1.3 still offered, on every certificate path (no SNI, the fallback picked by SNI, a user
// certificate); and the self-signed fallback carries a subjectAltName.
import t from 'tap'
import tls from 'node:tls'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { issueTestCert } from '../helpers/pebble.ts'
import { startProxyProcess, routesDoc, tempDir } from '../helpers/proxy-process.ts'
import { FALLBACK_SAN_NAME } from '../../certs/self-signed.ts'

interface Handshake { ok: boolean, protocol?: string | null, cipher?: string, san?: string, subject?: string, error?: string }

function handshake (port: number, servername: string | undefined, options: tls.ConnectionOptions): Promise<Handshake> {
  return new Promise((resolve) => {
    const s = tls.connect({ port, host: '127.0.0.1', servername, rejectUnauthorized: false, ...options }, () => {
      const cert = s.getPeerX509Certificate()
      resolve({ ok: true, protocol: s.getProtocol(), cipher: s.getCipher().name, san: cert?.subjectAltName, subject: cert?.subject })
      s.destroy()
    })
    s.on('error', (err) => { resolve({ ok: false, error: err.message }) })
  })
}

const dir = tempDir(t)
const ca = issueTestCert({ isCa: true, commonName: 'vmfront tls-policy test CA' })
const leaf = issueTestCert({ issuer: ca, dnsNames: ['user.test'] })
writeFileSync(join(dir, 'user.crt'), leaf.certPem)
writeFileSync(join(dir, 'user.key'), leaf.keyPem, { mode: 0o600 })
writeFileSync(join(dir, 'extra.toml'), `[[certificate]]\ndomains = ["user.test"]\ncertfile = ${JSON.stringify(join(dir, 'user.crt'))}\nkeyfile = ${JSON.stringify(join(dir, 'user.key'))}\n`)
const proxy = await startProxyProcess(t, {
  routes: routesDoc([]),
  listen: '[listen]\nhttp = ""\nhttps = "127.0.0.1:0"\nadmin = "127.0.0.1:0"',
  toml: `[tls]\nextra_certs_file = ${JSON.stringify(join(dir, 'extra.toml'))}`
})
const port = proxy.ports.https

// undefined: no SNI (the server's default context); the others come from the SNI callback.
const paths: Array<[string, string | undefined]> = [['no SNI', undefined], ['fallback by SNI', 'unknown.test'], ['user certificate', 'user.test']]

t.test('TLS 1.2: CBC suites are refused', async (t) => {
  for (const [what, servername] of paths) {
    for (const cipher of ['ECDHE-RSA-AES128-SHA256', 'ECDHE-RSA-AES256-SHA384', 'ECDHE-RSA-AES128-SHA', 'AES128-SHA256', 'AES128-GCM-SHA256']) {
      const h = await handshake(port, servername, { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2', ciphers: cipher })
      t.notOk(h.ok, `${what}: ${cipher} refused${h.ok ? ` (negotiated ${h.cipher})` : ''}`)
    }
  }
})

t.test('TLS 1.2: ECDHE with AES-GCM or ChaCha20-Poly1305 is accepted', async (t) => {
  for (const [what, servername] of paths) {
    for (const cipher of ['ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES256-GCM-SHA384', 'ECDHE-RSA-CHACHA20-POLY1305']) {
      const h = await handshake(port, servername, { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2', ciphers: cipher })
      t.same([h.protocol, h.cipher], ['TLSv1.2', cipher], `${what}: ${cipher}${h.ok ? '' : `: ${h.error ?? ''}`}`)
    }
    // A client offering everything gets an AEAD suite.
    const any = await handshake(port, servername, { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' })
    t.match(any.cipher, /GCM|CHACHA20/, `${what}: default client offer → ${any.cipher ?? any.error ?? ''}`)
  }
})

t.test('TLS 1.3 is still negotiated, and TLS 1.1 is not', async (t) => {
  for (const [what, servername] of paths) {
    const h = await handshake(port, servername, {})
    t.equal(h.protocol, 'TLSv1.3', `${what}: ${h.protocol ?? h.error ?? ''}`)
  }
  const old = await handshake(port, 'user.test', { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' })
  t.notOk(old.ok, 'TLS 1.1 refused')
})

t.test('the self-signed fallback carries a subjectAltName', async (t) => {
  for (const servername of [undefined, 'unknown.test']) {
    const h = await handshake(port, servername, {})
    t.match(h.subject, /vmfront fallback/, `the fallback is served (SNI ${servername ?? 'none'})`)
    t.equal(h.san, `DNS:${FALLBACK_SAN_NAME}`, 'its SAN is a dNSName')
  }
  const user = await handshake(port, 'user.test', {})
  t.equal(user.san, 'DNS:user.test', 'a user certificate is served as is')
})
