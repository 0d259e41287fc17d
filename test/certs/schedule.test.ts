// Renewal time from the certificate's own lifetime, and per-domain backoff.
import t from 'tap'
import { backoffDelay, renewalTime } from '../../certs/schedule.ts'

const day = 86400_000

t.test('renewal when a share of the lifetime remains, with bounded jitter', async (t) => {
  const cases: Array<[string, number, number]> = [
    ['90-day certificate', 90, 1 / 3], ['45-day tlsserver profile', 45, 1 / 3], ['6-day shortlived', 6, 1 / 3], ['90 days, ratio 0.5', 90, 0.5]
  ]
  for (const [name, days, ratio] of cases) {
    const nb = new Date(Date.parse('2026-01-01T00:00:00Z'))
    const na = new Date(nb.getTime() + days * day)
    const nominal = na.getTime() - days * day * ratio
    t.equal(renewalTime(nb, na, ratio, 0).getTime(), nominal, `${name}: no jitter`)
    const jittered = renewalTime(nb, na, ratio, 0.999).getTime()
    t.ok(jittered < nominal && nominal - jittered <= Math.min(days * day * 0.05, 6 * 3600_000), `${name}: jitter only earlier, at most min(5%, 6 h)`)
  }
  const nb = new Date(0)
  t.equal(renewalTime(nb, new Date(0), 1 / 3, 0.5).getTime(), 0, 'degenerate lifetime: renew at once')
})

t.test('exponential backoff, capped, jittered between 50% and 100%', async (t) => {
  t.equal(backoffDelay(1, 1000, 60_000, 0.999999), 1000)
  t.equal(backoffDelay(1, 1000, 60_000, 0), 500)
  t.equal(backoffDelay(2, 1000, 60_000, 0.999999), 2000)
  t.equal(backoffDelay(5, 1000, 60_000, 0.999999), 16_000)
  t.equal(backoffDelay(10, 1000, 60_000, 0.999999), 60_000, 'capped')
  t.equal(backoffDelay(1000, 1000, 60_000, 0.999999), 60_000, 'no overflow')
  t.ok(backoffDelay(1, 1, 1, 0) >= 1)
})
