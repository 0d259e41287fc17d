// Stored state at start, against a real Pebble: a corrupt certificate or account key is reported,
// moved aside and replaced (never fatal); an expired stored certificate (a VM back after months)
// is re-ordered at the first handshake once the policy allows the name again.
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { issuerKeyFromUrl } from '../../certs/storage.ts'
import { issueTestCert } from '../helpers/pebble.ts'
import { handshake, memoryLogger, newManager, recordEvents, startAcmeEnv, startTlsServer, tmpDir } from './harness.ts'

const env = await startAcmeEnv(t)
const issuerDir = (storageDir: string): string => join(storageDir, 'certs', issuerKeyFromUrl(env.pebble.directoryUrl))

t.test('a corrupt stored certificate is reported, moved aside and replaced', async (t) => {
  const dir = tmpDir(t)
  const first = newManager(t, env, { storageDir: dir })
  await first.start()
  await first.ensure('corrupt.test')
  await first.stop()
  const site = join(issuerDir(dir), 'corrupt.test')
  writeFileSync(join(site, 'cert.pem'), '-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n')

  const { lines, logger } = memoryLogger()
  const m = newManager(t, env, { storageDir: dir, logger })
  const ev = recordEvents(m)
  await m.start() // not fatal
  const reported = lines.find((l) => l.level === 'error' && /corrupt/.test(l.msg))
  t.ok(reported, 'logged as an error')
  t.equal(reported?.fields?.domain, 'corrupt.test')
  t.ok(readdirSync(site).some((n) => n.startsWith('cert.pem.corrupt-')), 'the corrupt file is kept aside for inspection')
  const order = await ev.waitForOrder((e) => e.domain === 'corrupt.test')
  t.equal(order.result, 'success', String(order.error))
  t.equal(order.reason, 'missing', 'replaced by the renewal loop without waiting for a handshake')
  t.match(readFileSync(join(site, 'cert.pem'), 'utf8'), /BEGIN CERTIFICATE/)
  const port = await startTlsServer(t, m)
  const h = await handshake(port, 'corrupt.test', { ca: await env.pebble.rootPem() })
  t.equal(h.authorized, true, 'the replacement is served')
})

t.test('a corrupt account key is reported and replaced', async (t) => {
  const dir = tmpDir(t)
  const first = newManager(t, env, { storageDir: dir })
  await first.start()
  await first.stop()
  const accountDir = join(dir, 'acme', issuerKeyFromUrl(env.pebble.directoryUrl))
  writeFileSync(join(accountDir, 'account.key'), 'garbage')
  const { lines, logger } = memoryLogger()
  const m = newManager(t, env, { storageDir: dir, logger })
  await m.start()
  t.ok(lines.some((l) => l.level === 'error' && /account key/.test(l.msg)), 'logged')
  t.ok(readdirSync(accountDir).some((n) => n.startsWith('account.key.corrupt-')))
  t.match(readFileSync(join(accountDir, 'account.key'), 'utf8'), /BEGIN PRIVATE KEY/, 'a new key')
  await m.ensure('account.test')
  t.equal(m.status().find((r) => r.domain === 'account.test')?.source, 'acme', 'orders work with the new account')
})

t.test('an expired stored certificate is re-ordered at the first handshake when the name is routed again', async (t) => {
  const dir = tmpDir(t)
  const old = issueTestCert({ dnsNames: ['old.test'], notBefore: new Date(Date.now() - 200 * 86400_000), notAfter: new Date(Date.now() - 100 * 86400_000) })
  const site = join(issuerDir(dir), 'old.test')
  // Stored the way a manager stores, months ago.
  const first = newManager(t, env, { storageDir: dir })
  await first.start()
  await first.stop()
  mkdirSync(site, { recursive: true, mode: 0o700 })
  writeFileSync(join(site, 'cert.pem'), old.certPem, { mode: 0o600 })
  writeFileSync(join(site, 'key.pem'), old.keyPem, { mode: 0o600 })

  let routed = false
  // A long maintenance interval: only the handshake can trigger the order here.
  const m = newManager(t, env, { storageDir: dir, policy: () => routed, maintenanceIntervalMs: 600_000 })
  const ev = recordEvents(m)
  await m.start()
  const row = m.status().find((r) => r.domain === 'old.test')
  t.equal(row?.source, 'acme')
  t.ok(Date.parse(row?.notAfter ?? '') < Date.now(), 'loaded, expired')
  const port = await startTlsServer(t, m)
  await handshake(port, 'old.test')
  t.equal(ev.orders.length, 0, 'not routed: no order')
  t.notOk(existsSync(join(site, 'meta.json')))

  routed = true // the VM is back
  await handshake(port, 'old.test')
  const order = await ev.waitForOrder((e) => e.domain === 'old.test')
  t.equal(order.reason, 'expired')
  t.equal(order.result, 'success', String(order.error))
  const h = await handshake(port, 'old.test', { ca: await env.pebble.rootPem() })
  t.equal(h.authorized, true, 'a fresh certificate, not the expired one')
})
