// On-demand ACME against a real Pebble: issuance at first handshake, policy, one order per burst,
// restart reuse, persisted files and modes, EC and RSA keys against both default-certificate types.
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { startAcmeShim } from './acme-shim.ts'
import { handshake, newManager, recordEvents, startAcmeEnv, startTlsServer, statusSerial, tmpDir } from './harness.ts'

const env = await startAcmeEnv(t)
const shim = await startAcmeShim(env.pebble)
t.teardown(() => shim.close())
const root = await env.pebble.rootPem()
const ordersFor = (domain: string): number =>
  shim.orders().filter((p) => JSON.stringify(p).includes(`"value":"${domain}"`)).length

t.test('first handshake gets the fallback and starts an order; the next gets a certificate chaining to Pebble', async (t) => {
  const dir = tmpDir(t)
  const m = newManager(t, env, { storageDir: dir, directoryUrl: shim.directoryUrl, policy: (d) => d === 'app.test' })
  const ev = recordEvents(m)
  await m.start()
  const port = await startTlsServer(t, m)

  const first = await handshake(port, 'app.test', { ca: root })
  t.match(first.subject, /vmfront fallback/, 'self-signed fallback while no certificate exists')
  t.equal(first.authorized, false)
  const order = await ev.waitForOrder((e) => e.domain === 'app.test')
  t.equal(order.result, 'success', String(order.error))
  t.equal(order.reason, 'on-demand')

  const second = await handshake(port, 'app.test', { ca: root })
  t.equal(second.authorized, true, `chains to Pebble's root: ${second.authorizationError}`)
  t.match(second.issuer, /Pebble Intermediate/)
  t.equal(second.keyType, 'ec', 'ACME certificates use EC P-256 keys')
  t.equal(second.alpn, 'h2', 'ALPN h2 with an SNI context')
  t.equal(second.serial, statusSerial(m, 'app.test'))
  t.same(ev.certificates.map((c) => [c.domain, c.source, c.removed]), [['app.test', 'acme', false]])
  const row = m.status().find((r) => r.domain === 'app.test')
  t.equal(row?.source, 'acme')
  t.ok(row?.renewAt !== undefined && new Date(row.renewAt) < new Date(row.notAfter), 'renewal planned before expiry')

  await t.test('a name the policy refuses never causes an order', async (t) => {
    const before = shim.orders().length
    const h = await handshake(port, 'other.test', { ca: root })
    t.match(h.subject, /vmfront fallback/)
    // Orders start synchronously inside the SNI callback, so an allowed name would show up now.
    t.equal(m.status().find((r) => r.domain === 'other.test'), undefined)
    await t.rejects(m.ensure('other.test'), { code: 'CERTS_DOMAIN_NOT_ALLOWED' })
    t.equal(shim.orders().length, before, 'no newOrder reached the CA')
    t.equal(ordersFor('other.test'), 0)
  })

  await t.test('files are persisted with private modes', async (t) => {
    const issuerDir = readdirSync(join(dir, 'certs'))[0]
    const site = join(dir, 'certs', issuerDir, 'app.test')
    for (const f of ['cert.pem', 'key.pem', 'meta.json']) t.equal(statSync(join(site, f)).mode & 0o777, 0o600, `${f} is 0600`)
    for (const d of [join(dir, 'certs'), join(dir, 'certs', issuerDir), site, join(dir, 'acme')]) t.equal(statSync(d).mode & 0o777, 0o700, `${d} is 0700`)
    const accountKey = join(dir, 'acme', readdirSync(join(dir, 'acme'))[0], 'account.key')
    t.equal(statSync(accountKey).mode & 0o777, 0o600, 'account key is 0600')
    t.match(readFileSync(join(site, 'key.pem'), 'utf8'), /BEGIN PRIVATE KEY/)
    t.equal(readdirSync(site).filter((n) => n.endsWith('.tmp')).length, 0, 'no temporary files left')
  })

  await t.test('a restart reuses the stored certificate and account with no new order', async (t) => {
    const ordersBefore = shim.orders().length
    const accountsBefore = shim.requests.filter((r) => r.path === '/sign-me-up').length
    const m2 = newManager(t, env, { storageDir: dir, directoryUrl: shim.directoryUrl, policy: (d) => d === 'app.test' })
    const ev2 = recordEvents(m2)
    await m2.start()
    t.same(ev2.certificates.map((c) => [c.domain, c.source]), [['app.test', 'acme']], 'stored certificate loaded (event for metrics)')
    const port2 = await startTlsServer(t, m2)
    const h = await handshake(port2, 'app.test', { ca: root })
    t.equal(h.authorized, true)
    t.equal(h.serial, second.serial, 'same certificate as before the restart')
    await m2.ensure('app.test') // not due: returns without ordering
    t.equal(shim.orders().length, ordersBefore, 'no new order')
    t.equal(shim.requests.filter((r) => r.path === '/sign-me-up').length, accountsBefore, 'no account request')
    t.equal(ev2.orders.length, 0)
  })
})

t.test('50 concurrent handshakes for a new name cause exactly one order', async (t) => {
  const m = newManager(t, env, { storageDir: tmpDir(t), directoryUrl: shim.directoryUrl })
  const ev = recordEvents(m)
  await m.start()
  const port = await startTlsServer(t, m)
  const results = await Promise.all(Array.from({ length: 50 }, async () => await handshake(port, 'burst.test', { ca: root })))
  t.equal(results.length, 50, 'every handshake completed')
  await ev.waitForOrder((e) => e.domain === 'burst.test')
  const after = await Promise.all(Array.from({ length: 10 }, async () => await handshake(port, 'burst.test', { ca: root })))
  t.ok(after.every((h) => h.authorized), 'all later handshakes get the issued certificate')
  t.equal(ev.orders.filter((e) => e.domain === 'burst.test').length, 1, 'one order event')
  t.equal(ordersFor('burst.test'), 1, 'one newOrder at the CA')
})

t.test('EC and RSA certificates via SNI, against RSA and EC default certificates, TLS 1.2 and 1.3', async (t) => {
  const ecDir = tmpDir(t)
  const ecMgr = newManager(t, env, { storageDir: ecDir })
  const rsaMgr = newManager(t, env, { storageDir: tmpDir(t), keyType: 'rsa-2048' })
  await ecMgr.start()
  await rsaMgr.start()
  await ecMgr.ensure('ec.test')
  await rsaMgr.ensure('rsa.test')

  // Default certificate RSA (the self-signed fallback) with an EC SNI context, and the reverse:
  // an EC default certificate (the issued ec.test one, read back from storage) with an RSA SNI context.
  const site = join(ecDir, 'certs', readdirSync(join(ecDir, 'certs'))[0], 'ec.test')
  const ecDefault = { key: readFileSync(join(site, 'key.pem'), 'utf8'), cert: readFileSync(join(site, 'cert.pem'), 'utf8') }
  const rsaDefaultPort = await startTlsServer(t, ecMgr)
  const ecDefaultPort = await startTlsServer(t, rsaMgr, ecDefault)
  for (const maxVersion of ['TLSv1.2', 'TLSv1.3'] as const) {
    const a = await handshake(rsaDefaultPort, 'ec.test', { ca: root, maxVersion })
    t.equal(a.keyType, 'ec', `${maxVersion}: EC SNI context over an RSA default`)
    t.equal(a.authorized, true, String(a.authorizationError))
    const b = await handshake(ecDefaultPort, 'rsa.test', { ca: root, maxVersion })
    t.equal(b.keyType, 'rsa', `${maxVersion}: RSA SNI context over an EC default`)
    t.equal(b.authorized, true, String(b.authorizationError))
    const c = await handshake(ecDefaultPort, 'unknown-name.test', { maxVersion })
    t.match(c.subject, /vmfront fallback/, `${maxVersion}: RSA fallback context over an EC default`)
    t.equal(c.keyType, 'rsa')
    const d = await handshake(ecDefaultPort, '', { maxVersion })
    t.equal(d.keyType, 'ec', `${maxVersion}: no SNI gets the server default`)
  }
})
