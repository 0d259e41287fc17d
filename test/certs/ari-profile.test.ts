// ACME Renewal Information (RFC 9773) and certificate profiles, against Pebble behind a recording
// shim that adds what Pebble 2.4 lacks (a renewalInfo endpoint, meta.profiles). Every ACME request
// still goes to the real Pebble.
import { X509Certificate } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { parseCertificateChain } from '../../certs/x509.ts'
import { pollUntil } from '../helpers/pebble.ts'
import { startAcmeShim } from './acme-shim.ts'
import { memoryLogger, newManager, recordEvents, startAcmeEnv, tmpDir } from './harness.ts'

const env = await startAcmeEnv(t)

t.test('renews inside the CA suggested window and sends replaces', async (t) => {
  let firstId: string | undefined
  const shim = await startAcmeShim(env.pebble, {
    ari: (certId) => {
      // The first certificate: "renew within the next second" (e.g. a revocation campaign);
      // any later one: a normal window in a month.
      firstId ??= certId
      const now = Date.now()
      return certId === firstId
        ? { start: new Date(now + 300), end: new Date(now + 1000), retryAfterSeconds: 60 }
        : { start: new Date(now + 30 * 86400_000), end: new Date(now + 31 * 86400_000) }
    }
  })
  t.teardown(() => shim.close())
  const dir = tmpDir(t)
  const m = newManager(t, env, { storageDir: dir, directoryUrl: shim.directoryUrl })
  const ev = recordEvents(m)
  await m.start()
  await m.ensure('ari.test') // Pebble's default lifetime is years: only ARI can make this renew now
  const site = join(dir, 'certs', readdirSync(join(dir, 'certs'))[0], 'ari.test')
  const firstPem = readFileSync(join(site, 'cert.pem'), 'utf8')
  const expectedId = parseCertificateChain(firstPem).info.ariCertId

  const renewal = await ev.waitForOrder((e) => e.reason === 'renewal', 15_000)
  t.equal(renewal.result, 'success', String(renewal.error))
  t.equal(shim.ariLookups[0], expectedId, 'renewalInfo looked up by the RFC 9773 certificate ID')
  const serialPart = Buffer.from((expectedId ?? '').split('.')[1], 'base64url').toString('hex').replace(/^(00)+/, '')
  t.equal(serialPart, new X509Certificate(firstPem).serialNumber.toLowerCase().replace(/^(00)+/, ''), 'ID carries the serial')
  const orders = shim.orders() as Array<{ replaces?: string }>
  t.equal(orders.length, 2)
  t.equal(orders[0].replaces, undefined, 'first order replaces nothing')
  t.equal(orders[1].replaces, expectedId, 'renewal order carries replaces')
  await pollUntil(() => m.status().find((r) => r.domain === 'ari.test')?.ariWindow !== undefined, 10_000, 'ARI window of the new certificate')
  const row = m.status().find((r) => r.domain === 'ari.test')
  t.equal(shim.ariLookups.length, 2, 'one lookup per certificate (Retry-After respected)')
  const renewAt = Date.parse(row?.renewAt ?? '')
  t.ok(renewAt >= Date.parse(row?.ariWindow?.start ?? '') && renewAt <= Date.parse(row?.ariWindow?.end ?? ''), 'the new certificate renews inside its own window, in a month')
})

t.test('acme.profile is sent with each order when the CA offers it', async (t) => {
  const shim = await startAcmeShim(env.pebble, { profiles: { classic: 'default', tlsserver: 'short-lived TLS server' } })
  t.teardown(() => shim.close())
  const m = newManager(t, env, { storageDir: tmpDir(t), directoryUrl: shim.directoryUrl, acme: { enabled: true, directoryUrl: shim.directoryUrl, email: '', caFile: env.pebble.caFile, profile: 'tlsserver' } })
  await m.start()
  await m.ensure('profile.test')
  t.same(shim.orders(), [{ identifiers: [{ type: 'dns', value: 'profile.test' }], profile: 'tlsserver' }])

  const bad = newManager(t, env, { storageDir: tmpDir(t), acme: { enabled: true, directoryUrl: shim.directoryUrl, email: '', caFile: env.pebble.caFile, profile: 'nope' } })
  await bad.start()
  await t.rejects(bad.ensure('profile2.test'), { code: 'CERTS_ORDER_FAILED', message: /nope.*not offered.*classic, tlsserver/ })
  t.equal(shim.orders().length, 1, 'an unknown profile never reaches the CA')
})

t.test('acme.profile is left out, with a warning, when the CA advertises no profiles', async (t) => {
  const shim = await startAcmeShim(env.pebble)
  t.teardown(() => shim.close())
  const { lines, logger } = memoryLogger()
  const m = newManager(t, env, { storageDir: tmpDir(t), logger, acme: { enabled: true, directoryUrl: shim.directoryUrl, email: '', caFile: env.pebble.caFile, profile: 'tlsserver' } })
  await m.start()
  await m.ensure('noprofile.test')
  t.same(shim.orders(), [{ identifiers: [{ type: 'dns', value: 'noprofile.test' }] }])
  t.ok(lines.some((l) => l.level === 'warn' && /profiles/.test(l.msg)))
})
