/**
 * Behaviour of proxy/rate-limit.ts on a fake clock: burst then 429, the delay path,
 * the concurrency limit and its overflow wait, cancellation and abort at every
 * stage, VIPs, profile fallback, idle-state expiry and the snapshot.
 */
import { EventEmitter } from 'node:events'
import t from 'tap'
import type { Test } from 'tap'
import { ABORTED, UNLIMITED, admitRequest, createRateLimiter } from '../../proxy/rate-limit.ts'
import type { Admission, RateLimiter, Refusal, RateLimitTimers, Ticket, Verdict, Wait } from '../../proxy/rate-limit.ts'
import { unlimitedProfile } from '../../proxy/rate-profile.ts'
import type { RateProfile } from '../../proxy/rate-profile.ts'
import { FakeClock, flush } from './rate-limit-fake-clock.ts'

type Limits = Partial<Omit<RateProfile, 'name'>>

function profile (name: string, limits: Limits): RateProfile {
  return { ...unlimitedProfile(name), ...limits }
}

function setup (t: Test, limits: Limits, extra: RateProfile[] = [], sweepIntervalMs = 60_000, maxQueuedPerIp?: number): { clock: FakeClock, limiter: RateLimiter } {
  const clock = new FakeClock()
  const limiter = createRateLimiter({ profiles: [profile('p', limits), ...extra], now: clock.now, timers: clock.timers, sweepIntervalMs, maxQueuedPerIp })
  t.teardown(() => { limiter.close() })
  return { clock, limiter }
}

function go (t: Test, a: Admission): Ticket {
  t.equal(a.kind, 'go', 'admitted at once')
  return a as Ticket
}

function wait (t: Test, a: Admission): Wait {
  t.equal(a.kind, 'wait', 'must wait')
  return a as Wait
}

/** Records the verdict of a wait once its promise settles. */
function watch (w: Wait): { verdict?: Verdict } {
  const box: { verdict?: Verdict } = {}
  void w.promise.then((v) => { box.verdict = v })
  return box
}

function state (limiter: RateLimiter, name = 'p'): ReturnType<RateLimiter['snapshot']>[number] {
  const found = limiter.snapshot().find((s) => s.name === name)
  if (found === undefined) throw new Error(`no profile ${name}`)
  return found
}

const IP = '198.51.100.1'

t.test('an unlimited profile answers the UNLIMITED constant and tracks nothing', async (t) => {
  const { limiter } = setup(t, {}, [profile('wp', { concurrentMaxRequests: 1 })])
  for (let i = 0; i < 100; i++) t.equal(limiter.admit(`192.0.2.${i}`, 'p'), UNLIMITED)
  // An unknown name with no declared default: the implicit default is unlimited.
  t.equal(limiter.admit(IP, 'nope'), UNLIMITED)
  t.equal(state(limiter).trackedIps, 0)
  t.equal(state(limiter, 'default').trackedIps, 0)
  UNLIMITED.release()
  UNLIMITED.release()
})

t.test('burst then 429 (reason rate), and the bucket refills with time', async (t) => {
  const { clock, limiter } = setup(t, { limitBurstRequests: 3, limitRequestsPerSecond: 2 })
  for (let i = 0; i < 3; i++) go(t, limiter.admit(IP, 'p'))
  const refused = limiter.admit(IP, 'p')
  t.same(refused, { kind: 'refuse', reason: 'rate', retryAfterSec: 1 })
  // Another IP has its own bucket.
  go(t, limiter.admit('198.51.100.2', 'p'))
  clock.advance(499)
  t.equal(limiter.admit(IP, 'p').kind, 'refuse', 'no token before one interval (500 ms)')
  clock.advance(1)
  go(t, limiter.admit(IP, 'p'))
  t.equal(limiter.admit(IP, 'p').kind, 'refuse')
  clock.advance(1500)
  for (let i = 0; i < 3; i++) go(t, limiter.admit(IP, 'p'))
  t.equal(limiter.admit(IP, 'p').kind, 'refuse', 'never more than the burst')
  t.equal(state(limiter).totals.refusedRate, 4)
})

t.test('Retry-After says when the request would fit again', async (t) => {
  const { limiter } = setup(t, { limitBurstRequests: 1, limitRequestsPerSecond: 0.1, limitMaxDelayMs: 3000 })
  go(t, limiter.admit(IP, 'p'))
  // The next token is 10 s away; 3 s of it could be waited: retry in 7 s.
  t.same(limiter.admit(IP, 'p'), { kind: 'refuse', reason: 'rate', retryAfterSec: 7 })
})

t.test('delay path: requests over the burst are slowed, in order, not refused, within limit_max_delay', async (t) => {
  const { clock, limiter } = setup(t, { limitBurstRequests: 2, limitRequestsPerSecond: 10, limitMaxDelayMs: 500 })
  go(t, limiter.admit(IP, 'p'))
  go(t, limiter.admit(IP, 'p'))
  const order: number[] = []
  const waits = [0, 1, 2, 3, 4].map((i) => {
    const w = wait(t, limiter.admit(IP, 'p'))
    void w.promise.then((v) => { t.equal(v.kind, 'go'); order.push(i) })
    return w
  })
  t.same(limiter.admit(IP, 'p'), { kind: 'refuse', reason: 'rate', retryAfterSec: 1 }, 'a 600 ms wait exceeds the 500 ms allowed')
  t.equal(state(limiter).delayed, 5)
  for (let i = 0; i < 5; i++) {
    clock.advance(99)
    await flush()
    t.equal(order.length, i, `request ${i + 3} still waits at ${(i + 1) * 100 - 1} ms`)
    clock.advance(1)
    await flush()
    t.equal(order.length, i + 1, `request ${i + 3} goes at ${(i + 1) * 100} ms`)
  }
  t.same(order, [0, 1, 2, 3, 4], 'first delayed, first served')
  t.equal(waits.length, 5)
  t.equal(state(limiter).delayed, 0)
  t.equal(state(limiter).totals.delayed, 5)
})

t.test('concurrency limit: an extra request waits for a slot, then gets 429 (reason concurrency)', async (t) => {
  const { clock, limiter } = setup(t, { concurrentMaxRequests: 2, concurrentOverflowTimeoutMs: 1000 })
  const a = go(t, limiter.admit(IP, 'p'))
  go(t, limiter.admit(IP, 'p'))
  const c = watch(wait(t, limiter.admit(IP, 'p')))
  const d = watch(wait(t, limiter.admit(IP, 'p')))
  go(t, limiter.admit('198.51.100.2', 'p'))
  t.match(state(limiter), { inFlight: 3, queued: 2 })
  clock.advance(500)
  a.release()
  await flush()
  t.equal(c.verdict?.kind, 'go', 'the freed slot goes to the first waiter')
  t.equal(d.verdict, undefined)
  a.release()
  t.match(state(limiter), { inFlight: 3, queued: 1 }, 'a second release frees nothing')
  clock.advance(499)
  await flush()
  t.equal(d.verdict, undefined, 'still waiting within concurrent_overflow_timeout')
  clock.advance(1)
  await flush()
  t.same(d.verdict, { kind: 'refuse', reason: 'concurrency', retryAfterSec: 1 })
  t.match(state(limiter), { inFlight: 3, queued: 0, totals: { queued: 2, refusedConcurrency: 1 } })
})

t.test('concurrent_overflow_timeout 0 refuses at once', async (t) => {
  const { limiter } = setup(t, { concurrentMaxRequests: 1, concurrentOverflowTimeoutMs: 0 })
  go(t, limiter.admit(IP, 'p'))
  t.same(limiter.admit(IP, 'p'), { kind: 'refuse', reason: 'concurrency', retryAfterSec: 1 })
})

t.test('a freed slot goes to the oldest waiter; a newcomer cannot barge in', async (t) => {
  const { limiter } = setup(t, { concurrentMaxRequests: 1, concurrentOverflowTimeoutMs: 5000 })
  const a = go(t, limiter.admit(IP, 'p'))
  const b = watch(wait(t, limiter.admit(IP, 'p')))
  a.release()
  wait(t, limiter.admit(IP, 'p'))
  await flush()
  t.equal(b.verdict?.kind, 'go')
})

t.test('a request cancelled while queued leaves the queue and takes no slot', async (t) => {
  const { limiter } = setup(t, { concurrentMaxRequests: 1, concurrentOverflowTimeoutMs: 5000 })
  const a = go(t, limiter.admit(IP, 'p'))
  const ctrl = new AbortController()
  const bw = wait(t, limiter.admit(IP, 'p', ctrl.signal))
  const b = watch(bw)
  const cw = wait(t, limiter.admit(IP, 'p'))
  const c = watch(cw)
  const d = watch(wait(t, limiter.admit(IP, 'p')))
  ctrl.abort()
  cw.cancel()
  cw.cancel()
  await flush()
  t.equal(b.verdict, ABORTED, 'abort signal')
  t.equal(c.verdict, ABORTED, 'cancel()')
  t.match(state(limiter), { inFlight: 1, queued: 1, totals: { aborted: 2 } })
  a.release()
  await flush()
  t.equal(d.verdict?.kind, 'go', 'the slot skips the cancelled waiters')
  const dt = d.verdict as Ticket
  t.match(state(limiter), { inFlight: 1, queued: 0 })
  dt.release()
  t.match(state(limiter), { inFlight: 0, queued: 0 })
  bw.cancel()
  t.equal(state(limiter).inFlight, 0, 'cancelling a settled wait changes nothing')
})

t.test('a client that disconnects mid-request frees its slot; the later release is harmless', async (t) => {
  const { limiter } = setup(t, { concurrentMaxRequests: 1, concurrentOverflowTimeoutMs: 5000 })
  const ctrl = new AbortController()
  const a = go(t, limiter.admit(IP, 'p', ctrl.signal))
  const b = watch(wait(t, limiter.admit(IP, 'p')))
  ctrl.abort()
  await flush()
  t.equal(b.verdict?.kind, 'go', 'the waiter got the slot of the aborted request')
  a.release()
  t.equal(state(limiter).inFlight, 1, 'the late release of the aborted request frees nothing')
  wait(t, limiter.admit(IP, 'p'))
})

t.test('cancel() after a wait ended in go releases that slot (client left as it was admitted)', async (t) => {
  const { limiter } = setup(t, { concurrentMaxRequests: 1, concurrentOverflowTimeoutMs: 5000 })
  const a = go(t, limiter.admit(IP, 'p'))
  const bw = wait(t, limiter.admit(IP, 'p'))
  a.release()
  const v = await bw.promise
  t.equal(v.kind, 'go')
  t.equal(state(limiter).inFlight, 1)
  bw.cancel()
  t.equal(state(limiter).inFlight, 0, 'the slot granted after the wait is free again')
  ;(v as Ticket).release()
  bw.cancel()
  t.equal(state(limiter).inFlight, 0, 'and only once')
  go(t, limiter.admit(IP, 'p'))
})

t.test('an already aborted signal is not admitted and holds nothing', async (t) => {
  const { limiter } = setup(t, { concurrentMaxRequests: 1 })
  const w = wait(t, limiter.admit(IP, 'p', AbortSignal.abort()))
  t.equal(await w.promise, ABORTED)
  go(t, limiter.admit(IP, 'p'))
})

t.test('a request aborted while delayed gives back its token and its slot', async (t) => {
  const { clock, limiter } = setup(t, { concurrentMaxRequests: 5, limitBurstRequests: 1, limitRequestsPerSecond: 1, limitMaxDelayMs: 2000 })
  go(t, limiter.admit(IP, 'p'))
  const ctrl = new AbortController()
  const b = watch(wait(t, limiter.admit(IP, 'p', ctrl.signal)))
  t.match(state(limiter), { inFlight: 2, delayed: 1 }, 'a delayed request holds its slot')
  ctrl.abort()
  await flush()
  t.equal(b.verdict, ABORTED)
  t.match(state(limiter), { inFlight: 1, delayed: 0 })
  // Without the token given back, the next one would wait 2000 ms, not 1000 ms.
  const c = watch(wait(t, limiter.admit(IP, 'p')))
  clock.advance(999)
  await flush()
  t.equal(c.verdict, undefined)
  clock.advance(1)
  await flush()
  t.equal(c.verdict?.kind, 'go')
})

t.test('concurrency then bucket: the slot is held while delayed, and a rate refusal frees it', async (t) => {
  await t.test('delayed after the overflow wait', async (t) => {
    const { clock, limiter } = setup(t, { concurrentMaxRequests: 1, concurrentOverflowTimeoutMs: 5000, limitBurstRequests: 1, limitRequestsPerSecond: 1, limitMaxDelayMs: 1500 })
    const a = go(t, limiter.admit(IP, 'p'))
    const b = watch(wait(t, limiter.admit(IP, 'p')))
    a.release()
    await flush()
    t.equal(b.verdict, undefined, 'b has the slot but waits for a token')
    t.match(state(limiter), { inFlight: 1, delayed: 1, queued: 0 })
    const c = watch(wait(t, limiter.admit(IP, 'p')))
    t.match(state(limiter), { queued: 1 }, 'the delayed request still counts against the limit')
    clock.advance(1000)
    await flush()
    t.equal(b.verdict?.kind, 'go')
    ;(b.verdict as Ticket).release()
    clock.advance(1000)
    await flush()
    t.equal(c.verdict?.kind, 'go')
  })
  await t.test('refused by the bucket after the overflow wait', async (t) => {
    const { limiter } = setup(t, { concurrentMaxRequests: 1, concurrentOverflowTimeoutMs: 5000, limitBurstRequests: 1, limitRequestsPerSecond: 1 })
    const a = go(t, limiter.admit(IP, 'p'))
    const b = watch(wait(t, limiter.admit(IP, 'p')))
    a.release()
    await flush()
    t.same(b.verdict, { kind: 'refuse', reason: 'rate', retryAfterSec: 1 })
    t.equal(state(limiter).inFlight, 0, 'the refused request gave its slot back')
    t.same(limiter.admit(IP, 'p'), { kind: 'refuse', reason: 'rate', retryAfterSec: 1 })
    t.equal(state(limiter).inFlight, 0)
  })
  await t.test('a long queue refused by the bucket unwinds without recursion', async (t) => {
    // A line that long needs the per-IP cap raised (64 by default).
    const { limiter } = setup(t, { concurrentMaxRequests: 1, concurrentOverflowTimeoutMs: 5000, limitBurstRequests: 1, limitRequestsPerSecond: 1 }, [], 60_000, 20_000)
    const a = go(t, limiter.admit(IP, 'p'))
    const boxes: Array<{ verdict?: Verdict }> = []
    for (let i = 0; i < 20_000; i++) boxes.push(watch(limiter.admit(IP, 'p') as Wait))
    t.doesNotThrow(() => { a.release() })
    await flush()
    t.ok(boxes.every((b) => b.verdict?.kind === 'refuse'))
    t.match(state(limiter), { inFlight: 0, queued: 0 })
  })
})

t.test('VIPs are never limited: IPv4, IPv6, CIDRs, IPv4-mapped', async (t) => {
  const vipList = ['192.0.2.7', '2001:db8::1', '10.0.0.0/8', '2001:db8:ff::/48']
  const { limiter } = setup(t, { concurrentMaxRequests: 1, concurrentOverflowTimeoutMs: 0, limitBurstRequests: 1, limitRequestsPerSecond: 1, vipList })
  for (const ip of ['192.0.2.7', '::ffff:192.0.2.7', '2001:db8::1', '2001:DB8:0:0::1', '10.200.3.4', '::ffff:10.0.0.1', '2001:db8:ff:1::9']) {
    for (let i = 0; i < 5; i++) t.equal(limiter.admit(ip, 'p'), UNLIMITED, `${ip} #${i}`)
  }
  t.equal(state(limiter).trackedIps, 0, 'VIPs are not tracked')
  go(t, limiter.admit('192.0.2.8', 'p'))
  t.equal(limiter.admit('192.0.2.8', 'p').kind, 'refuse')
  go(t, limiter.admit('11.0.0.1', 'p'))
  go(t, limiter.admit('2001:db8:fe::1', 'p'))
  t.equal(limiter.admit('::ffff:192.0.2.8', 'p').kind, 'refuse', 'an IPv4-mapped address is the same client as its IPv4 form')
})

t.test('an unknown profile falls back to default', async (t) => {
  const { limiter } = setup(t, { limitBurstRequests: 5, limitRequestsPerSecond: 1 }, [profile('default', { concurrentMaxRequests: 1, concurrentOverflowTimeoutMs: 0 })])
  t.ok(limiter.hasProfile('p'))
  t.ok(limiter.hasProfile('default'))
  t.notOk(limiter.hasProfile('nope'))
  t.equal(limiter.profile('nope').name, 'default')
  t.equal(limiter.profile('p').limitBurstRequests, 5)
  go(t, limiter.admit(IP, 'nope'))
  t.equal(limiter.admit(IP, 'default').kind, 'refuse', 'the fallback shares the default profile state')
  go(t, limiter.admit(IP, 'p'))
  go(t, limiter.admit(IP, 'p'))
  t.equal(state(limiter, 'default').trackedIps, 1)
  t.equal(state(limiter, 'p').trackedIps, 1, 'each profile tracks the IP on its own')
})

t.test('idle per-IP state expires once nothing is in flight and the bucket is full', async (t) => {
  await t.test('by the periodic sweep', async (t) => {
    const { clock, limiter } = setup(t, { concurrentMaxRequests: 2, limitBurstRequests: 2, limitRequestsPerSecond: 1 }, [], 10_000)
    go(t, limiter.admit(IP, 'p')).release()
    const held = go(t, limiter.admit('198.51.100.2', 'p'))
    t.equal(state(limiter).trackedIps, 2)
    // One token taken at 1 token/s: the bucket is full again after 1000 ms.
    clock.advance(999)
    t.equal(limiter.sweep(), 0, 'the bucket has not refilled yet')
    clock.advance(1)
    t.equal(limiter.sweep(), 1, 'the idle IP goes; the one in flight stays')
    held.release()
    clock.advance(10_000)
    t.equal(state(limiter).trackedIps, 0, 'the timer swept the rest')
    // Forgetting an idle IP is invisible: it starts again with a full bucket.
    go(t, limiter.admit(IP, 'p')).release()
    go(t, limiter.admit(IP, 'p')).release()
    t.equal(limiter.admit(IP, 'p').kind, 'refuse')
  })
  await t.test('whether it trims the table or copies the survivors', async (t) => {
    const { clock, limiter } = setup(t, { concurrentMaxRequests: 1 })
    const held = [1, 2, 3, 4].map((i) => go(t, limiter.admit(`192.0.2.${i}`, 'p')))
    go(t, limiter.admit('192.0.2.5', 'p')).release()
    clock.advance(1)
    t.equal(limiter.sweep(), 1, 'one idle of five: deleted in place')
    t.equal(state(limiter).trackedIps, 4)
    held.slice(0, 3).forEach((h) => { h.release() })
    t.equal(limiter.sweep(), 3, 'three idle of four: survivors copied')
    t.match(state(limiter), { trackedIps: 1, inFlight: 1 })
    held[3].release()
    t.match(state(limiter), { trackedIps: 1, inFlight: 0 }, 'the surviving entry is the live one')
    t.equal(limiter.sweep(), 1)
  })
  await t.test('lazily, when a new IP arrives after a missed sweep', async (t) => {
    const clock = new FakeClock()
    // Timers that never fire, as under a blocked event loop.
    const stuck: RateLimitTimers = { setTimeout: () => 0, clearTimeout: () => {} }
    const limiter = createRateLimiter({ profiles: [profile('p', { limitBurstRequests: 1, limitRequestsPerSecond: 1 })], now: clock.now, timers: stuck, sweepIntervalMs: 1000 })
    go(t, limiter.admit('192.0.2.1', 'p'))
    clock.advance(999)
    go(t, limiter.admit('192.0.2.2', 'p'))
    t.equal(state(limiter).trackedIps, 2)
    clock.advance(1)
    go(t, limiter.admit('192.0.2.3', 'p'))
    t.equal(state(limiter).trackedIps, 2, 'the first IP was swept when the third arrived')
  })
  await t.test('the sweep timer is unref\'d and stops on close', async (t) => {
    let unrefs = 0
    let cleared = 0
    const timers: RateLimitTimers = { setTimeout: () => ({ unref: () => { unrefs++ } }), clearTimeout: () => { cleared++ } }
    const limiter = createRateLimiter({ profiles: [profile('p', { concurrentMaxRequests: 1 })], timers })
    t.equal(unrefs, 1)
    limiter.close()
    t.equal(cleared, 1)
  })
})

t.test('snapshot: per-profile counts and the busiest IPs first', async (t) => {
  const { limiter } = setup(t, { concurrentMaxRequests: 3, concurrentOverflowTimeoutMs: 1000, limitBurstRequests: 10, limitRequestsPerSecond: 1 })
  for (let i = 0; i < 4; i++) limiter.admit('192.0.2.1', 'p')
  for (let i = 0; i < 2; i++) limiter.admit('192.0.2.2', 'p')
  limiter.admit('192.0.2.3', 'p')
  const s = state(limiter)
  t.match(s, { name: 'p', limited: true, trackedIps: 3, inFlight: 6, queued: 1, delayed: 0 })
  t.same(s.top.map((e) => e.ip), ['192.0.2.1', '192.0.2.2', '192.0.2.3'])
  t.same(s.top[0], { ip: '192.0.2.1', inFlight: 3, queued: 1, delayed: 0, tokensUsed: 3 })
  t.same(limiter.snapshot({ top: 1 }).find((p) => p.name === 'p')?.top.map((e) => e.ip), ['192.0.2.1'])
  t.same(limiter.snapshot({ top: 0 }).find((p) => p.name === 'p')?.top, [])
  t.match(state(limiter, 'default'), { limited: false, trackedIps: 0 })
  t.doesNotThrow(() => JSON.stringify(limiter.snapshot()))
})

t.test('malformed profiles are refused with CONFIG_INVALID', async (t) => {
  const bad: Array<[string, Limits | RateProfile[]]> = [
    ['negative concurrency', { concurrentMaxRequests: -1 }],
    ['fractional burst', { limitBurstRequests: 1.5, limitRequestsPerSecond: 1 }],
    ['bucket without a rate', { limitBurstRequests: 5 }],
    ['infinite delay', { limitMaxDelayMs: Infinity }],
    ['bad VIP', { vipList: ['not-an-ip'] }],
    ['duplicate names', [profile('x', {}), profile('x', {})]]
  ]
  for (const [what, limits] of bad) {
    const profiles = Array.isArray(limits) ? limits : [profile('p', limits)]
    t.throws(() => createRateLimiter({ profiles }), { code: 'CONFIG_INVALID' }, what)
  }
  t.throws(() => createRateLimiter({ profiles: [], sweepIntervalMs: 0 }), { code: 'CONFIG_INVALID' })
})

t.test('admitRequest: callbacks, release on close, nothing for a client gone while waiting', async (t) => {
  const { clock, limiter } = setup(t, { concurrentMaxRequests: 1, concurrentOverflowTimeoutMs: 1000 })
  const calls: string[] = []
  const run = (id: string, res: EventEmitter, onError?: (err: unknown) => void, go = (): void => { calls.push(`go ${id}`) }): void => {
    admitRequest(limiter, IP, 'p', res, go, (r: Refusal) => { calls.push(`refuse ${id} ${r.reason}`) }, onError)
  }
  const resA = new EventEmitter()
  run('A', resA)
  const resB = new EventEmitter()
  run('B', resB)
  const resC = new EventEmitter()
  run('C', resC)
  t.same(calls, ['go A'])
  resB.emit('close')
  resA.emit('close')
  await flush()
  t.same(calls, ['go A', 'go C'], 'B left while waiting: no callback, and C got the slot')
  run('D', new EventEmitter())
  clock.advance(1000)
  await flush()
  t.same(calls, ['go A', 'go C', 'refuse D concurrency'])
  resC.emit('close')
  t.equal(state(limiter).inFlight, 0)
  // Unlimited: go at once, no listener added.
  const open = new EventEmitter()
  admitRequest(limiter, IP, 'nope', open, () => { calls.push('go open') }, () => {})
  t.equal(open.listenerCount('close'), 0)
  // An exception from go after a wait reaches onError.
  const resE = new EventEmitter()
  run('E', resE)
  const errors: unknown[] = []
  run('F', new EventEmitter(), (err) => { errors.push(err) }, () => { throw new Error('boom') })
  resE.emit('close')
  await flush()
  t.match(errors, [{ message: 'boom' }])
})
