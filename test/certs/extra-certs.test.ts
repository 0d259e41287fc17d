// extra_certs_file: user certificates served by SNI (exact and wildcard), winning over ACME,
// validated all-or-nothing with clear errors naming the file and entry, previous set kept.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { createCertManager, type CertManager } from '../../certs/index.ts'
import { issueTestCert } from '../helpers/pebble.ts'
import { createFakeIssuer } from './fake-issuer.ts'
import { handshake, recordEvents, startTlsServer, tmpDir } from './harness.ts'

const ca = issueTestCert({ isCa: true, commonName: 'User CA' })
const other = issueTestCert({ isCa: true, commonName: 'Other CA' })

function write (dir: string, name: string, cert: { certPem: string, keyPem: string }): { certfile: string, keyfile: string } {
  writeFileSync(join(dir, `${name}.crt`), cert.certPem + ca.certPem)
  writeFileSync(join(dir, `${name}.key`), cert.keyPem, { mode: 0o600 })
  return { certfile: `${name}.crt`, keyfile: join(dir, `${name}.key`) }
}

function toml (entries: Array<{ domains: string[], certfile: string, keyfile: string }>): string {
  return entries.map((e) => `[[certificate]]\ndomains = ${JSON.stringify(e.domains)}\ncertfile = ${JSON.stringify(e.certfile)}\nkeyfile = '${e.keyfile}'\n`).join('\n')
}

function manager (t: { teardown: (fn: () => unknown) => void }, dir: string, file: string, acme = false): { m: CertManager, issuer: ReturnType<typeof createFakeIssuer> } {
  const issuer = createFakeIssuer()
  const m = createCertManager({
    storageDir: dir,
    extraCertsFile: file,
    policy: () => true,
    acme: { enabled: acme, directoryUrl: 'letsencrypt-staging', email: '' },
    issuer,
    maintenanceIntervalMs: 600_000
  })
  t.teardown(() => m.stop())
  return { m, issuer }
}
t.test('valid user certificates are served by SNI, exact and wildcard', async (t) => {
  const dir = tmpDir(t)
  const site = write(dir, 'site', issueTestCert({ issuer: ca, dnsNames: ['user.test', 'www.user.test'] }))
  const wild = write(dir, 'wild', issueTestCert({ issuer: ca, dnsNames: ['*.wild.test'] }))
  const file = join(dir, 'extra_certs.toml')
  writeFileSync(file, '# user certificates\n' + toml([{ domains: ['user.test', 'WWW.user.test.'], ...site }, { domains: ['*.wild.test'], ...wild }]))
  const { m } = manager(t, dir, file)
  const ev = recordEvents(m)
  await m.start()
  t.same(ev.certificates.map((c) => [c.domain, c.source]).sort(), [['*.wild.test', 'extra'], ['user.test', 'extra'], ['www.user.test', 'extra']])
  const port = await startTlsServer(t, m)
  for (const name of ['user.test', 'www.user.test', 'a.wild.test']) {
    const h = await handshake(port, name, { ca: ca.certPem })
    t.equal(h.authorized, true, `${name}: ${h.authorizationError}`)
    t.equal(h.keyType, 'rsa')
  }
  t.match((await handshake(port, 'a.b.wild.test')).subject, /vmfront fallback/, 'a wildcard covers one label only')
  t.same(m.status().map((r) => [r.domain, r.source, r.issuer]), [['*.wild.test', 'extra', 'User CA'], ['user.test', 'extra', 'User CA'], ['www.user.test', 'extra', 'User CA']])
})

t.test('invalid files are rejected with the file and entry named, and the previous set keeps serving', async (t) => {
  const dir = tmpDir(t)
  const good = write(dir, 'good', issueTestCert({ issuer: ca, dnsNames: ['good.test'] }))
  const file = join(dir, 'extra.toml')
  writeFileSync(file, toml([{ domains: ['good.test'], ...good }]))
  const { m } = manager(t, dir, file)
  await m.start()
  const port = await startTlsServer(t, m)

  const mismatch = write(dir, 'mismatch', issueTestCert({ issuer: ca, dnsNames: ['bad.test'] }))
  writeFileSync(join(dir, 'mismatch.key'), issueTestCert({ issuer: ca, dnsNames: ['bad.test'] }).keyPem)
  const expired = write(dir, 'expired', issueTestCert({ issuer: ca, dnsNames: ['bad.test'], notBefore: new Date(Date.now() - 10 * 86400_000), notAfter: new Date(Date.now() - 86400_000) }))
  const uncovered = write(dir, 'uncovered', issueTestCert({ issuer: other, dnsNames: ['something-else.test'] }))
  const cases: Array<[string, string, string, RegExp]> = [
    ['key mismatch', toml([{ domains: ['good.test'], ...good }, { domains: ['bad.test'], ...mismatch }]), 'CERTS_EXTRA_INVALID', /#2.*does not match/],
    ['expired', toml([{ domains: ['bad.test'], ...expired }]), 'CERTS_EXTRA_INVALID', /#1.*expired/],
    ['domain not covered', toml([{ domains: ['bad.test'], ...uncovered }]), 'CERTS_EXTRA_INVALID', /#1.*does not cover bad\.test/],
    ['missing cert file', toml([{ domains: ['bad.test'], certfile: 'nope.crt', keyfile: good.keyfile }]), 'CERTS_EXTRA_UNREADABLE', /#1.*nope\.crt/],
    ['unknown key', '[[certificate]]\ndomains = ["good.test"]\ncertfile = "good.crt"\nkeyfile = "good.key"\nkey_file = "x"\n', 'CERTS_EXTRA_INVALID', /#1.*unknown key "key_file"/],
    ['syntax error', '[[certificate]]\ndomains = ["good.test"\n', 'CERTS_EXTRA_INVALID', /line \d+/],
    ['duplicate domain', toml([{ domains: ['good.test'], ...good }, { domains: ['good.test'], ...good }]), 'CERTS_EXTRA_INVALID', /#2.*listed twice/],
    ['empty domains', toml([{ domains: [], ...good }]), 'CERTS_EXTRA_INVALID', /#1.*domains/]
  ]
  for (const [name, content, code, message] of cases) {
    writeFileSync(file, content)
    const err = await m.loadExtraCerts().then(() => undefined, (e: unknown) => e as { code: string, message: string, file: string })
    t.equal(err?.code, code, `${name}: code`)
    t.match(err?.message, message, `${name}: message`)
    t.ok(err?.message.startsWith(file), `${name}: message names the file`)
    t.equal(err?.file, file)
    const h = await handshake(port, 'good.test', { ca: ca.certPem })
    t.equal(h.authorized, true, `${name}: previous certificate still served`)
  }
})

t.test('user certificates win over ACME, and removing one falls back to ACME', async (t) => {
  const dir = tmpDir(t)
  const file = join(dir, 'extra.toml')
  writeFileSync(file, '')
  const { m, issuer } = manager(t, dir, file, true)
  const ev = recordEvents(m)
  await m.start()
  await m.ensure('both.test')
  t.equal(issuer.calls.length, 1)
  const port = await startTlsServer(t, m)
  t.equal((await handshake(port, 'both.test', { ca: issuer.ca.certPem })).authorized, true, 'ACME (fake CA) first')

  const user = write(dir, 'both', issueTestCert({ issuer: ca, dnsNames: ['both.test', 'only-user.test'] }))
  writeFileSync(file, toml([{ domains: ['both.test', 'only-user.test'], ...user }]))
  await m.loadExtraCerts()
  t.equal((await handshake(port, 'both.test', { ca: ca.certPem })).authorized, true, 'the user certificate wins')
  await m.ensure('only-user.test')
  t.equal(issuer.calls.length, 1, 'no order for a name a user certificate covers')
  await handshake(port, 'only-user.test')
  t.equal(issuer.calls.length, 1, 'not on handshake either')

  ev.certificates.length = 0
  writeFileSync(file, '# nothing\n')
  await m.loadExtraCerts()
  t.equal((await handshake(port, 'both.test', { ca: issuer.ca.certPem })).authorized, true, 'back to ACME')
  t.same(ev.certificates.map((c) => [c.domain, c.source, c.removed]).sort(), [['both.test', 'acme', false], ['only-user.test', 'extra', true]])
})
