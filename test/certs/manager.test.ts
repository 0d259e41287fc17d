// Manager rules that need no CA, with an in-process fake issuer: backoff, disabled ACME, policy
// failures, the concurrency cap, lifecycle errors, name normalisation and option validation.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { createCertManager, normalizeServerName, type CertManagerOptions } from '../../certs/index.ts'
import { resolveCertOptions } from '../../certs/config.ts'
import { pollUntil } from '../helpers/pebble.ts'
import { createFakeIssuer } from './fake-issuer.ts'
import { handshake, memoryLogger, recordEvents, startTlsServer, tmpDir } from './harness.ts'

function make (t: { teardown: (fn: () => unknown) => void }, extra: Partial<CertManagerOptions> = {}): { m: ReturnType<typeof createCertManager>, issuer: ReturnType<typeof createFakeIssuer> } {
  const issuer = createFakeIssuer()
  const m = createCertManager({
    storageDir: tmpDir(t),
    policy: () => true,
    acme: { enabled: true, directoryUrl: 'letsencrypt-staging', email: '' },
    issuer,
    backoffBaseMs: 150,
    backoffMaxMs: 300,
    maintenanceIntervalMs: 600_000,
    ...extra
  })
  t.teardown(() => m.stop())
  return { m, issuer }
}

t.test('failed orders back off per domain and never hammer the CA', async (t) => {
  // Backoff long enough (0.75-1.5 s) that the checks below run inside it even on a loaded machine.
  const { m, issuer } = make(t, { backoffBaseMs: 1500, backoffMaxMs: 3000 })
  const ev = recordEvents(m)
  await m.start()
  issuer.fail = new Error('rateLimited: too many failed authorizations')
  const err = await m.ensure('fail.test').then(() => undefined, (e: unknown) => e as { code: string, cause: unknown })
  t.equal(err?.code, 'CERTS_ORDER_FAILED')
  t.equal((err?.cause as Error).message, 'rateLimited: too many failed authorizations', 'the CA error is the cause')
  t.equal(ev.orders.length, 1)
  t.equal(ev.orders[0].result, 'failure')
  const row = m.status().find((r) => r.domain === 'fail.test')
  t.equal(row?.source, 'self-signed', 'still on the fallback')
  t.match(row?.lastError, /rateLimited/)
  t.ok(row?.retryAt, 'retry time visible')
  await t.rejects(m.ensure('fail.test'), { code: 'CERTS_ORDER_BACKOFF' })
  const port = await startTlsServer(t, m)
  await Promise.all([handshake(port, 'fail.test'), handshake(port, 'fail.test')])
  t.equal(issuer.calls.length, 1, 'no order during the backoff, not even from handshakes')

  issuer.fail = undefined
  await pollUntil(() => Date.now() > Date.parse(row?.retryAt ?? ''), 5000, 'end of backoff')
  await handshake(port, 'fail.test')
  const ok = await ev.waitForOrder((e) => e.result === 'success')
  // The renewal loop wakes at the end of the backoff by itself ('missing'), or the handshake wins the race.
  t.match(ok.reason, /^(on-demand|missing)$/)
  t.equal(m.status().find((r) => r.domain === 'fail.test')?.lastError, undefined)
})

t.test('with ACME disabled: fallback only, no orders', async (t) => {
  const { m, issuer } = make(t, { acme: { enabled: false, directoryUrl: 'letsencrypt', email: '' } })
  await m.start()
  const port = await startTlsServer(t, m)
  t.match((await handshake(port, 'app.test')).subject, /vmfront fallback/)
  await t.rejects(m.ensure('app.test'), { code: 'CERTS_ACME_DISABLED' })
  t.equal(issuer.calls.length, 0)
  t.same(m.status(), [])
})

t.test('a throwing policy means "no", and is logged', async (t) => {
  const { lines, logger } = memoryLogger()
  const { m, issuer } = make(t, { logger, policy: () => { throw new Error('route table unavailable') } })
  await m.start()
  const port = await startTlsServer(t, m)
  t.match((await handshake(port, 'app.test')).subject, /vmfront fallback/)
  await t.rejects(m.ensure('app.test'), { code: 'CERTS_DOMAIN_NOT_ALLOWED' })
  t.equal(issuer.calls.length, 0)
  t.ok(lines.some((l) => l.level === 'error' && /policy threw/.test(l.msg)))
})

t.test('at most maxConcurrentOrders orders run at once; one per domain', async (t) => {
  const { m, issuer } = make(t, { maxConcurrentOrders: 2 })
  await m.start()
  let open = (): void => {}
  issuer.gate = new Promise((resolve) => { open = resolve })
  const all = ['a.test', 'b.test', 'c.test', 'd.test', 'a.test'].map(async (d) => await m.ensure(d))
  await pollUntil(() => issuer.calls.length === 2, 2000, 'two orders started')
  t.equal(issuer.calls.length, 2, 'the others wait for a slot')
  open()
  await Promise.all(all)
  t.same(issuer.calls.map((c) => c.domain).sort(), ['a.test', 'b.test', 'c.test', 'd.test'], 'a.test ordered once')
})

t.test('lifecycle: ensure needs start, stop refuses new work; listeners cannot break orders', async (t) => {
  const { m } = make(t)
  await t.rejects(m.ensure('x.test'), { code: 'CERTS_STOPPED' })
  m.on('certificate', () => { throw new Error('listener bug') })
  await m.start()
  await m.ensure('x.test')
  t.equal(m.status().find((r) => r.domain === 'x.test')?.source, 'acme', 'issued despite a throwing listener')
  await m.stop()
  await t.rejects(m.ensure('y.test'), { code: 'CERTS_STOPPED' })
  const opts1 = m.defaultSecureContextOptions()
  t.equal(m.defaultSecureContextOptions().key, opts1.key, 'one fallback key per manager')
})

t.test('server names are normalised before lookup and policy', async (t) => {
  const cases: Array<[string | undefined, string | undefined]> = [
    ['App.Test.', 'app.test'], ['app.test', 'app.test'], ['127.0.0.1', undefined], ['', undefined], [undefined, undefined],
    ['../etc/passwd', undefined], ['a..b', undefined], ['a/b.test', undefined], ['-bad.test', undefined], ['x'.repeat(254), undefined],
    ['xn--bcher-kva.example', 'xn--bcher-kva.example'], ['*.wild.test', undefined]
  ]
  for (const [input, want] of cases) {
    t.equal(normalizeServerName(input), want, JSON.stringify(input))
  }
  const seen: string[] = []
  const { m } = make(t, { policy: (d) => { seen.push(d); return false } })
  await m.start()
  const port = await startTlsServer(t, m)
  await handshake(port, 'APP.test')
  t.same(seen, ['app.test'])
})

t.test('options are validated once, naming the key', async (t) => {
  const base: CertManagerOptions = { storageDir: '/tmp/x', policy: () => true, acme: { enabled: true, directoryUrl: 'letsencrypt', email: '' } }
  t.equal(resolveCertOptions(base).acme.directoryUrl, 'https://acme-v02.api.letsencrypt.org/directory')
  t.equal(resolveCertOptions({ ...base, acme: { ...base.acme, directoryUrl: 'letsencrypt-staging' } }).acme.directoryUrl, 'https://acme-staging-v02.api.letsencrypt.org/directory')
  t.equal(resolveCertOptions(base).renewRatio, 1 / 3)
  t.equal(resolveCertOptions(base).keyType, 'ec-p256')
  const bad: Array<[Partial<CertManagerOptions>, RegExp]> = [
    [{ acme: { ...base.acme, directoryUrl: 'http://ca.example/dir' } }, /acme.directory_url: must be https/],
    [{ acme: { ...base.acme, directoryUrl: 'letsencrypt-prod' } }, /acme.directory_url: not a URL/],
    [{ acme: { ...base.acme, caFile: '/nonexistent/ca.pem' } }, /acme.ca_file: cannot read/],
    [{ renewRatio: 1 }, /renewRatio/],
    [{ acme: { ...base.acme, email: 'not an address' } }, /acme.email/],
    [{ backoffBaseMs: -1 }, /backoffBaseMs/],
    [{ storageDir: '' }, /storageDir/]
  ]
  for (const [patch, message] of bad) {
    t.throws(() => resolveCertOptions({ ...base, ...patch }), { code: 'CERTS_CONFIG_INVALID', message })
  }
  const dir = tmpDir(t)
  writeFileSync(join(dir, 'ca.pem'), 'not a pem')
  t.throws(() => resolveCertOptions({ ...base, acme: { ...base.acme, caFile: join(dir, 'ca.pem') } }), { code: 'CERTS_CONFIG_INVALID', message: /no PEM certificate/ })
})
