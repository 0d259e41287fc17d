/**
 * proxy/rate-limit.ts keeps bounded state whatever the clients do (issue 9, point 7):
 * at most `maxQueuedPerIp` requests of one IP wait (the rest get a 429 at once, and
 * are counted), a waiting request leaves the line in O(1) from anywhere in it while
 * the oldest still takes a freed slot, and past `maxTrackedIps` only entries holding
 * no request are forgotten, oldest first. Fake clock.
 */
import t from 'tap'
import type { Test } from 'tap'
import { createRateLimiter } from '../../proxy/rate-limit.ts'
import type { Admission, RateLimiter, RateLimiterOptions, Ticket, Verdict, Wait } from '../../proxy/rate-limit.ts'
import { unlimitedProfile } from '../../proxy/rate-profile.ts'
import type { RateProfile } from '../../proxy/rate-profile.ts'
import { FakeClock, flush } from './rate-limit-fake-clock.ts'

const IP = '198.51.100.1'
/** The documented defaults (README, rate limiting). */
const DEFAULT_MAX_QUEUED_PER_IP = 64
const DEFAULT_MAX_TRACKED_IPS = 100_000

function setup (t: Test, limits: Partial<RateProfile>, options: Partial<RateLimiterOptions> = {}): { clock: FakeClock, limiter: RateLimiter } {
  const clock = new FakeClock()
  const limiter = createRateLimiter({ profiles: [{ ...unlimitedProfile('p'), ...limits }], now: clock.now, timers: clock.timers, sweepIntervalMs: 60_000, ...options })
  t.teardown(() => { limiter.close() })
  return { clock, limiter }
}

function state (limiter: RateLimiter): ReturnType<RateLimiter['snapshot']>[number] {
  return limiter.snapshot().find((s) => s.name === 'p') as ReturnType<RateLimiter['snapshot']>[number]
}

function watch (a: Admission): { wait: Wait, verdict?: Verdict } {
  if (a.kind !== 'wait') throw new Error(`expected a wait, got ${a.kind}`)
  const box: { wait: Wait, verdict?: Verdict } = { wait: a }
  void a.promise.then((v) => { box.verdict = v })
  return box
}

t.test(`one IP: ${DEFAULT_MAX_QUEUED_PER_IP} requests wait, the rest get a 429 at once, counted`, async (t) => {
  const { clock, limiter } = setup(t, { concurrentMaxRequests: 2, concurrentOverflowTimeoutMs: 60_000 })
  const held = [limiter.admit(IP, 'p'), limiter.admit(IP, 'p')] as Ticket[]
  t.same(held.map((a) => a.kind), ['go', 'go'])
  const waiting = []
  for (let i = 0; i < DEFAULT_MAX_QUEUED_PER_IP; i++) waiting.push(watch(limiter.admit(IP, 'p')))
  for (let i = 0; i < 500; i++) {
    const a = limiter.admit(IP, 'p')
    if (a.kind !== 'refuse') return t.fail(`request ${i} over the line got ${a.kind}`)
  }
  t.same(limiter.admit(IP, 'p'), { kind: 'refuse', reason: 'concurrency', retryAfterSec: 1 }, 'a 429 at once, not after the 60 s wait')
  t.match(state(limiter), { inFlight: 2, queued: DEFAULT_MAX_QUEUED_PER_IP, totals: { queued: DEFAULT_MAX_QUEUED_PER_IP, queueFull: 501, refusedConcurrency: 501 } })
  t.equal(clock.pendingTimers, DEFAULT_MAX_QUEUED_PER_IP + 1, 'one timer per waiting request (plus the sweep), none for the refused')

  // Another IP has its own line.
  t.equal(limiter.admit('198.51.100.2', 'p').kind, 'go')
  // A place freed in the line is a place a newcomer may take.
  waiting[10].wait.cancel()
  const late = watch(limiter.admit(IP, 'p'))
  t.equal(limiter.admit(IP, 'p').kind, 'refuse')
  // Fairness holds: the freed slots go to the oldest waiters, in order.
  held[0].release()
  held[1].release()
  await flush()
  t.equal(waiting[0].verdict?.kind, 'go')
  t.equal(waiting[1].verdict?.kind, 'go')
  t.equal(waiting[2].verdict, undefined)
  t.equal(late.verdict, undefined, 'the newcomer waits at the back')
  t.equal(waiting[10].verdict?.kind, 'aborted')
})

t.test('removal from anywhere in the line keeps its order (linked list)', async (t) => {
  const { clock, limiter } = setup(t, { concurrentMaxRequests: 1, concurrentOverflowTimeoutMs: 1000 }, { maxQueuedPerIp: 10 })
  const first = limiter.admit(IP, 'p') as Ticket
  const w = Array.from({ length: 6 }, () => watch(limiter.admit(IP, 'p')))
  // Leave from the head, the tail and the middle.
  w[0].wait.cancel()
  w[5].wait.cancel()
  w[2].wait.cancel()
  w[2].wait.cancel() // twice: idempotent
  t.equal(state(limiter).queued, 3)
  const order: number[] = []
  for (const i of [1, 3, 4]) void w[i].wait.promise.then((v) => { if (v.kind === 'go') { order.push(i); v.release() } })
  first.release()
  await flush()
  await flush()
  t.same(order, [1, 3, 4], 'the survivors take the slot oldest first')
  t.match(state(limiter), { inFlight: 0, queued: 0 })
  // A line emptied by timeouts from its head leaves a working entry.
  const again = limiter.admit(IP, 'p') as Ticket
  const x = watch(limiter.admit(IP, 'p'))
  const y = watch(limiter.admit(IP, 'p'))
  clock.advance(1000)
  await flush()
  t.same([x.verdict?.kind, y.verdict?.kind], ['refuse', 'refuse'])
  const z = watch(limiter.admit(IP, 'p'))
  again.release()
  await flush()
  t.equal(z.verdict?.kind, 'go')
})

t.test('100,000 waiting requests leave in random order in O(1) each', async (t) => {
  const n = 100_000
  const { limiter } = setup(t, { concurrentMaxRequests: 1, concurrentOverflowTimeoutMs: 60_000 }, { maxQueuedPerIp: n })
  const first = limiter.admit(IP, 'p') as Ticket
  const waits: Wait[] = []
  for (let i = 0; i < n; i++) waits.push(limiter.admit(IP, 'p') as Wait)
  const oldest = watch(waits[0])
  const rest = waits.slice(1)
  let seed = 7
  for (let i = rest.length - 1; i > 0; i--) {
    seed = (seed * 1103515245 + 12345) % 2147483648
    const j = seed % (i + 1)
    ;[rest[i], rest[j]] = [rest[j], rest[i]]
  }
  const t0 = performance.now()
  for (const w of rest) w.cancel()
  const ms = performance.now() - t0
  // An array with indexOf + splice needs ~5e9 comparisons here: several seconds.
  t.ok(ms < 1500, `cancelled ${n - 1} waiting requests in ${Math.round(ms)} ms`)
  t.equal(state(limiter).queued, 1)
  first.release()
  await flush()
  t.equal(oldest.verdict?.kind, 'go', 'the one left still gets the slot')
})

t.test(`distinct IPs: never more than maxTrackedIps (default ${DEFAULT_MAX_TRACKED_IPS}) entries, busy ones kept`, async (t) => {
  const cap = 1000
  const { limiter } = setup(t, { concurrentMaxRequests: 1, concurrentOverflowTimeoutMs: 0, limitBurstRequests: 2, limitRequestsPerSecond: 1 }, { maxTrackedIps: cap })
  // 300 clients with a request in flight: their entries must survive any flood.
  const busy: Ticket[] = []
  for (let i = 0; i < 300; i++) busy.push(limiter.admit(`10.9.${i >> 8}.${i & 255}`, 'p') as Ticket)
  t.ok(busy.every((a) => a.kind === 'go'))
  let peak = 0
  for (let i = 0; i < 20_000; i++) {
    const a = limiter.admit(`2001:db8::${i.toString(16)}`, 'p')
    if (a.kind === 'go') a.release()
    if (i % 50 === 0) peak = Math.max(peak, limiter.snapshot({ top: 0 })[0].trackedIps)
  }
  peak = Math.max(peak, limiter.snapshot({ top: 0 })[0].trackedIps)
  t.ok(peak <= cap, `peak ${peak} tracked entries <= ${cap}`)
  t.ok(state(limiter).totals.evicted >= 19_000, `forgotten entries are counted (${state(limiter).totals.evicted})`)
  let stillLimited = 0
  for (let i = 0; i < 300; i++) if (limiter.admit(`10.9.${i >> 8}.${i & 255}`, 'p').kind === 'refuse') stillLimited++
  t.equal(stillLimited, 300, 'every busy client is still at its concurrency limit')
  // The newest entries are kept: a client that just spent its burst is still limited.
  const last = '2001:db8::4e1f'
  t.equal(limiter.admit(last, 'p').kind, 'go')
  t.equal(limiter.admit(last, 'p').kind, 'refuse', 'its bucket was remembered')
  for (const a of busy) a.release()
})

t.test('a map full of busy entries grows only with the requests holding them, at O(1) per new IP', async (t) => {
  const cap = 100
  const { limiter } = setup(t, { concurrentMaxRequests: 1, concurrentOverflowTimeoutMs: 0 }, { maxTrackedIps: cap })
  const held: Ticket[] = []
  for (let i = 0; i < 5000; i++) held.push(limiter.admit(`10.1.${i >> 8}.${i & 255}`, 'p') as Ticket)
  t.ok(held.every((a) => a.kind === 'go'), 'nobody is refused for the limiter being full')
  t.equal(state(limiter).trackedIps, 5000, 'a request in flight is never forgotten')
  t.equal(state(limiter).totals.evicted, 0)
  for (const a of held) a.release()
  t.equal(limiter.sweep(), 5000)
  for (let i = 0; i < 1000; i++) {
    const a = limiter.admit(`10.2.${i >> 8}.${i & 255}`, 'p')
    if (a.kind === 'go') a.release()
  }
  t.ok(state(limiter).trackedIps <= cap, 'once they end, the cap holds again')
})

t.test('limiter options are checked', async (t) => {
  const profiles = [unlimitedProfile('p')]
  t.throws(() => createRateLimiter({ profiles, maxQueuedPerIp: -1 }), { code: 'CONFIG_INVALID', message: /maxQueuedPerIp/ })
  t.throws(() => createRateLimiter({ profiles, maxTrackedIps: 1.5 }), { code: 'CONFIG_INVALID', message: /maxTrackedIps/ })
})
