// ACME Renewal Information (RFC 9773): certificate ID, window parsing, time choice.
import t from 'tap'
import { ARI_DEFAULT_RECHECK_MS, ariCertId, parseRenewalInfo, pickRenewalTime } from '../../certs/ari.ts'

t.test('certificate ID as in RFC 9773 §4.1', async (t) => {
  // The RFC's example: AKI 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4, serial 00:87:65:43:21.
  const aki = Buffer.from('69885B6B87464041E1B37B847BA0AE2CDE01C8D4', 'hex')
  t.equal(ariCertId(aki, Buffer.from('0087654321', 'hex')), 'aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE')
})

t.test('renewalInfo parsing', async (t) => {
  const now = Date.parse('2026-01-01T00:00:00Z')
  const body = { suggestedWindow: { start: '2026-01-10T00:00:00Z', end: '2026-01-12T00:00:00Z' }, explanationURL: 'https://ca.example/why' }
  const w = parseRenewalInfo(body, '21600', now)
  t.equal(w.start.toISOString(), '2026-01-10T00:00:00.000Z')
  t.equal(w.end.toISOString(), '2026-01-12T00:00:00.000Z')
  t.equal(w.explanationUrl, 'https://ca.example/why')
  t.equal(w.recheckMs, 21600_000)
  const cases: Array<[string | undefined, number]> = [
    [undefined, ARI_DEFAULT_RECHECK_MS], ['', ARI_DEFAULT_RECHECK_MS], ['1', 60_000], ['999999', 24 * 3600_000],
    ['Thu, 01 Jan 2026 02:00:00 GMT', 2 * 3600_000], ['soon', ARI_DEFAULT_RECHECK_MS]
  ]
  for (const [header, want] of cases) t.equal(parseRenewalInfo(body, header, now).recheckMs, want, `Retry-After ${String(header)}`)
  for (const bad of [null, {}, { suggestedWindow: {} }, { suggestedWindow: { start: 'x', end: 'y' } },
    { suggestedWindow: { start: '2026-01-12T00:00:00Z', end: '2026-01-10T00:00:00Z' } }]) {
    t.throws(() => parseRenewalInfo(bad, undefined, now), { code: 'CERTS_ARI_INVALID' }, JSON.stringify(bad))
  }
})

t.test('the renewal time is uniform inside the window', async (t) => {
  const w = { start: new Date(1000), end: new Date(2000), explanationUrl: undefined, recheckMs: 1 }
  t.equal(pickRenewalTime(w, 0).getTime(), 1000)
  t.equal(pickRenewalTime(w, 0.5).getTime(), 1500)
  t.ok(pickRenewalTime(w, 0.999999).getTime() < 2000)
})
