/**
 * A flood of 100,000 distinct client IPs through proxy/rate-limit.ts leaves a bounded
 * number of tracked entries, and none once the flood is over (SPEC §5, issue 5).
 * Time is a fake clock, so the whole flood runs in a fraction of a second.
 */
import t from 'tap'
import type { Test } from 'tap'
import { createRateLimiter } from '../../proxy/rate-limit.ts'
import type { Admission, RateLimiter } from '../../proxy/rate-limit.ts'
import { unlimitedProfile } from '../../proxy/rate-profile.ts'
import { FakeClock } from './rate-limit-fake-clock.ts'

const FLOOD = 100_000
const SWEEP_MS = 1000

/** The i-th distinct client: IPv4 and IPv6 alternately. */
function clientIp (i: number): string {
  return i % 2 === 0
    ? `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`
    : `2001:db8:${(i >> 16).toString(16)}::${(i & 0xffff).toString(16)}`
}

function tracked (limiter: RateLimiter): number {
  return limiter.snapshot({ top: 0 }).reduce((n, p) => n + p.trackedIps, 0)
}

function makeLimiter (t: Test, clock: FakeClock): RateLimiter {
  // limit_burst 5 at 10/s: an IP's bucket refills 500 ms after its last request.
  const wp = { ...unlimitedProfile('wp'), concurrentMaxRequests: 4, limitBurstRequests: 5, limitRequestsPerSecond: 10, limitMaxDelayMs: 1000 }
  const limiter = createRateLimiter({ profiles: [wp], now: clock.now, timers: clock.timers, sweepIntervalMs: SWEEP_MS })
  t.teardown(() => { limiter.close() })
  return limiter
}

function release (a: Admission): void {
  if (a.kind !== 'go') throw new Error(`expected go, got ${a.kind}`)
  a.release()
}

t.test('100,000 distinct IPs over 10 s: tracked entries stay bounded, then drop to zero', async (t) => {
  const clock = new FakeClock()
  const limiter = makeLimiter(t, clock)
  let peak = 0
  for (let i = 0; i < FLOOD; i++) {
    release(limiter.admit(clientIp(i), 'wp'))
    clock.advance(0.1) // 10,000 new IPs per second
    if (i % 1000 === 999) peak = Math.max(peak, tracked(limiter))
  }
  // An entry lives at most a sweep interval plus its bucket refill (500 ms) after
  // its last request: at 10 IPs/ms that is about 15,000 entries, never 100,000.
  t.ok(peak <= 16_000, `peak tracked entries ${peak} <= 16,000 (of ${FLOOD})`)
  t.ok(peak >= 5_000, `the flood was tracked at all (peak ${peak})`)
  clock.advance(2 * SWEEP_MS)
  t.equal(tracked(limiter), 0, 'a quiet period leaves no per-IP state')
})

t.test('100,000 distinct IPs all in flight at once: all tracked while busy, none after', async (t) => {
  const clock = new FakeClock()
  const limiter = makeLimiter(t, clock)
  const tickets: Admission[] = []
  for (let i = 0; i < FLOOD; i++) tickets.push(limiter.admit(clientIp(i), 'wp'))
  t.equal(tracked(limiter), FLOOD, 'a request in flight is never forgotten')
  clock.advance(10 * SWEEP_MS)
  t.equal(tracked(limiter), FLOOD, 'not even after the buckets refilled')
  for (const a of tickets) release(a)
  t.equal(limiter.snapshot()[0].inFlight, 0)
  clock.advance(SWEEP_MS)
  t.equal(tracked(limiter), 0)
})
