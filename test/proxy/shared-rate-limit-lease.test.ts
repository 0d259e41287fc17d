/**
 * Leases of proxy/shared-rate-limit.ts (SPEC §12): with several workers, a profile
 * whose limits are large against workers x block is admitted from blocks the
 * primary leases to each worker, so the round trip per request becomes one per
 * block; small limits are never leased; nothing is ever admitted beyond the limit
 * (concurrency or token bucket, fake clock), and leased slots come back (idle,
 * close, a worker's exit). Workers and primary talk over an in-memory channel
 * pair that serializes as Node's IPC does (JSON).
 */
import { EventEmitter } from 'node:events'
import t from 'tap'
import type { Test } from 'tap'
import { createRateLimiter, type Admission, type RateLimiter, type Ticket, type Verdict } from '../../proxy/rate-limit.ts'
import { unlimitedProfile, type RateProfile } from '../../proxy/rate-profile.ts'
import { createRemoteRateLimiter, leaseBlock, serveRateLimits, LEASE_IDLE_MS, LEASE_SHARE, MAX_SLOT_BLOCK } from '../../proxy/shared-rate-limit.ts'
import { createIpcPeer, type IpcChannel } from '../../proxy/worker-ipc.ts'
import { FakeClock } from './rate-limit-fake-clock.ts'

/** Two ends of a channel; `onAsk` is called for each rate-limit request sent either way. */
function channelPair (onAsk: () => void): { a: IpcChannel, b: IpcChannel, disconnect: () => void } {
  const ea = new EventEmitter()
  const eb = new EventEmitter()
  const end = (self: EventEmitter, other: EventEmitter): IpcChannel => ({
    connected: true,
    send (message: unknown) {
      const copy = JSON.parse(JSON.stringify(message))
      for (const [kind, , op] of (copy as { vmfront?: Array<[string, number, string]> }).vmfront ?? []) if (kind === 'q' && op === 'rl.admit') onAsk()
      setImmediate(() => { other.emit('message', copy) })
      return true
    },
    on (event: string, fn: (...args: any[]) => void) { self.on(event, fn); return this }
  } as IpcChannel)
  return { a: end(ea, eb), b: end(eb, ea), disconnect: () => { ea.emit('disconnect'); eb.emit('disconnect') } }
}

function profile (limits: Partial<RateProfile>): RateProfile {
  return { ...unlimitedProfile('p'), ...limits }
}

interface Proxy { primary: RateLimiter, workers: RateLimiter[], asks: () => number, kill: (i: number) => void, clock: FakeClock }

/** One primary limiter and `n` worker limiters, all on one fake clock. */
function setup (t: Test, p: RateProfile, n: number): Proxy {
  const clock = new FakeClock()
  const primary = createRateLimiter({ profiles: [p], now: clock.now, timers: clock.timers, sweepIntervalMs: 3_600_000 })
  let asks = 0
  const workers: RateLimiter[] = []
  const kills: Array<() => void> = []
  for (let i = 0; i < n; i++) {
    const { a, b, disconnect } = channelPair(() => { asks++ })
    const served = serveRateLimits(() => primary, createIpcPeer(a), () => n)
    workers.push(createRemoteRateLimiter([p], createIpcPeer(b), clock.now))
    kills.push(() => { served.release(); disconnect() })
  }
  t.teardown(() => { for (const w of workers) w.close(); primary.close() })
  return { primary, workers, asks: () => asks, kill: (i) => { kills[i]() }, clock }
}

async function settle (a: Admission): Promise<Verdict> {
  return a.kind === 'wait' ? await a.promise : a
}

function inFlight (limiter: RateLimiter): number {
  return limiter.snapshot().find((s) => s.name === 'p')!.inFlight
}

t.test('leaseBlock: large limits get a block, small ones never', async (t) => {
  t.same(leaseBlock(profile({ concurrentMaxRequests: 100_000, limitBurstRequests: 1_000_000, limitRequestsPerSecond: 1_000_000 }), 4), { slots: MAX_SLOT_BLOCK, tokens: Math.floor(1_000_000 / (LEASE_SHARE * 4)) })
  t.equal(leaseBlock(profile({ concurrentMaxRequests: 2 }), 2), undefined, '2 concurrent: no lease')
  t.equal(leaseBlock(profile({ limitBurstRequests: 10, limitRequestsPerSecond: 0.001 }), 4), undefined, '10 requests: no lease')
  t.equal(leaseBlock(profile({ concurrentMaxRequests: 100 }), 4), undefined, '100 concurrent with 4 workers: under 16 x 4 x 4')
  t.equal(leaseBlock(profile({ limitBurstRequests: 200, limitRequestsPerSecond: 1000 }), 2), undefined, 'a burst of 200 with 2 workers: a block would be under 8 tokens')
  t.equal(leaseBlock(profile({}), 2), undefined, 'unlimited')
})

t.test('small limits: every request asks the primary, the limit holds exactly across workers', async (t) => {
  const px = setup(t, profile({ concurrentMaxRequests: 2, concurrentOverflowTimeoutMs: 0 }), 4)
  const verdicts = await Promise.all([0, 1, 2, 3, 0, 1].map(async (w) => await settle(px.workers[w].admit('10.0.0.1', 'p'))))
  t.equal(verdicts.filter((v) => v.kind === 'go').length, 2, '2 admitted')
  t.equal(verdicts.filter((v) => v.kind === 'refuse').length, 4, '4 refused')
  t.equal(px.asks(), 6, 'one round trip per request')
  for (const v of verdicts) if (v.kind === 'go') v.release()
  await new Promise((resolve) => setImmediate(resolve))
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(inFlight(px.primary), 0, 'released in the primary')
})

t.test('a large concurrency limit: one round trip per block, never more in flight than the limit', async (t) => {
  const limit = 2048 // 2 workers: block 64 (2048 / (16 x 2))
  const px = setup(t, profile({ concurrentMaxRequests: limit, concurrentOverflowTimeoutMs: 0 }), 2)
  const held: Ticket[] = []
  let refused = 0
  // Requests that stay in flight, from both workers, sequentially (each waits its answer).
  for (let i = 0; i < limit + 200; i++) {
    const v = await settle(px.workers[i % 2].admit('10.0.0.1', 'p'))
    if (v.kind === 'go') held.push(v)
    else refused++
    if (held.length > limit) { t.fail(`${held.length} admitted, over the limit`); break }
  }
  t.equal(held.length, limit, 'every slot used (sequential: no leased slot sits idle)')
  t.equal(refused, 200)
  // A round trip per block while whole blocks are free, then one per request (the last slots, the refused).
  t.ok(px.asks() <= limit / MAX_SLOT_BLOCK + 2 * MAX_SLOT_BLOCK + 200, `round trips (${px.asks()}) far fewer than requests`)
  t.equal(inFlight(px.primary), limit)
  for (const h of held) h.release()
  // Leased slots stay with the workers until idle; close gives them back now.
  for (const w of px.workers) w.close()
  await new Promise((resolve) => setTimeout(resolve, 20))
  t.equal(inFlight(px.primary), 0, 'every leased slot given back')
})

t.test('idle leased slots go back to the primary by themselves', async (t) => {
  const px = setup(t, profile({ concurrentMaxRequests: 4096, concurrentOverflowTimeoutMs: 0 }), 2)
  const v = await settle(px.workers[0].admit('10.0.0.2', 'p'))
  t.equal(v.kind, 'go')
  t.equal(inFlight(px.primary), 64, 'a block of 64 slots leased')
  ;(v as Ticket).release()
  // The worker's sweep runs on real timers (the limiter's clock is fake): move the clock, then wait one sweep.
  px.clock.advance(LEASE_IDLE_MS + 1)
  const deadline = Date.now() + 5 * LEASE_IDLE_MS
  while (inFlight(px.primary) !== 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
  t.equal(inFlight(px.primary), 0, 'given back once idle')
})

t.test('a worker that exits gives its leased slots back', async (t) => {
  const px = setup(t, profile({ concurrentMaxRequests: 4096, concurrentOverflowTimeoutMs: 0 }), 2)
  const v = await settle(px.workers[1].admit('10.0.0.3', 'p'))
  t.equal(v.kind, 'go')
  t.equal(inFlight(px.primary), 64)
  px.kill(1)
  t.equal(inFlight(px.primary), 0, 'released with the worker')
})

t.test('a large token bucket: leased tokens refill only once reported used, so the bucket bound holds exactly', async (t) => {
  const burst = 1024
  const rate = 1000 // a token a ms; 2 workers: block 32 tokens
  const px = setup(t, profile({ limitBurstRequests: burst, limitRequestsPerSecond: rate }), 2)
  let admitted = 0
  const start = px.clock.now()
  const check = (): void => {
    const bound = burst + Math.floor((px.clock.now() - start) * rate / 1000)
    if (admitted > bound) t.fail(`admitted ${admitted} > bucket bound ${bound}`)
  }
  // Frozen time: the burst and no more.
  for (let i = 0; i < burst + 300; i++) {
    const v = await settle(px.workers[i % 2].admit('10.0.0.4', 'p'))
    if (v.kind === 'go') admitted++
    check()
  }
  t.ok(admitted <= burst, `burst: ${admitted} <= ${burst}`)
  t.ok(admitted >= burst - 2 * 32, `burst: at most workers x block unused (${admitted})`)
  const asksAtBurst = px.asks()
  t.ok(asksAtBurst < 300 + burst / 16, `round trips: ${asksAtBurst}`)
  // Time moves in small steps while both workers keep asking: never above burst + rate x time.
  for (let step = 0; step < 200; step++) {
    px.clock.advance(3)
    for (let i = 0; i < 4; i++) {
      const v = await settle(px.workers[(step + i) % 2].admit('10.0.0.4', 'p'))
      if (v.kind === 'go') admitted++
      check()
    }
  }
  t.ok(admitted > burst, 'the refill admits more as time passes')
  // Near the limit blocks are not leased: nothing lapses unused while the client is refused.
  t.ok(admitted >= burst + 600 - 2 * 32, `near the limit the refill is used (${admitted})`)
  t.pass(`${admitted} admitted in ${px.clock.now() - start} ms, within the bound at every step`)
})

t.test('tokens left in a lease while the bucket refills are not spent on top of a full bucket', async (t) => {
  const burst = 1024
  const rate = 1000
  const px = setup(t, profile({ limitBurstRequests: burst, limitRequestsPerSecond: rate }), 2)
  t.equal((await settle(px.workers[0].admit('10.0.0.5', 'p'))).kind, 'go', 'worker 0 leases a block and keeps 31 tokens')
  // Long enough for the primary's bucket to be full again.
  px.clock.advance(2 * burst * 1000 / rate)
  let admitted = 0
  for (let i = 0; i < burst + 100; i++) {
    if ((await settle(px.workers[i % 2].admit('10.0.0.5', 'p'))).kind === 'go') admitted++
  }
  t.ok(admitted <= burst, `${admitted} admitted at once: no more than the burst`)
  t.ok(admitted >= burst - 2 * 32, 'at most workers x block unused')
})
