/**
 * Bounded versions of the attacks in limiter-attacks.ts (issue 9, point 7), with the
 * heap measured: a flood of distinct client IPs, one IP flooding its wait line, and
 * log-throttle keys churning. `npm run torture` may call the same functions at 1M.
 */
import t from 'tap'
import { churnLogThrottle, floodDistinctIps, floodOneIpQueue } from './limiter-attacks.ts'

t.test('250,000 distinct IPs at once: tracked entries and heap stay bounded', async (t) => {
  const r = floodDistinctIps({ ips: 250_000 })
  t.ok(r.peakTracked <= 100_000, `peak tracked ${r.peakTracked} <= 100,000 (default maxTrackedIps)`)
  t.ok(r.evicted >= 150_000, `evicted ${r.evicted}`)
  // 100,000 entries at ~200 bytes: ~20 MiB; unbounded, 250,000 would be ~35 MiB.
  t.ok(r.heapPeakMiB - r.heapBaseMiB < 26, `heap +${(r.heapPeakMiB - r.heapBaseMiB).toFixed(1)} MiB`)
})

t.test('one IP sends 5,000 requests over a 1-slot profile: 64 wait, the rest get 429 at once', async (t) => {
  const r = await floodOneIpQueue({ requests: 5000 })
  t.equal(r.waiting, 64)
  t.equal(r.refusedAtOnce, 5000 - 1 - 64)
  t.ok(r.fair, 'the oldest waiting request took the freed slot')
  t.ok(r.heapPeakMiB - r.heapBaseMiB < 2, `heap +${(r.heapPeakMiB - r.heapBaseMiB).toFixed(1)} MiB`)
})

t.test('300,000 churning log-throttle keys: the heap does not keep them', async (t) => {
  const r = churnLogThrottle({ keys: 300_000 })
  t.ok(r.heapPeakMiB - r.heapBaseMiB < 4, `heap +${(r.heapPeakMiB - r.heapBaseMiB).toFixed(1)} MiB after ${r.keys} keys (${r.heldKeys ?? '?'} held)`)
})
