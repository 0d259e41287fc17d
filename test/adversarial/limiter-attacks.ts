/**
 * @module test/adversarial/limiter-attacks
 * Attacks on the memory the rate limiter and the log throttle keep per input
 * (issue 9, point 7), as functions a torture runner calls at full scale and the
 * regression tests call small. Time is simulated (no waiting); the heap is real.
 * Each returns plain numbers for a report table.
 *
 * Full scale from the command line (one JSON object):
 *   ./node_modules/.bin/node test/adversarial/limiter-attacks.ts [--ips 1000000] [--queue 100000] [--keys 1000000]
 */
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { parseArgs } from 'node:util'
import { createLogThrottle } from '../../proxy/log-throttle.ts'
import { createRateLimiter } from '../../proxy/rate-limit.ts'
import type { Admission, RateLimiter, RateLimitTimers, Verdict } from '../../proxy/rate-limit.ts'
import { unlimitedProfile } from '../../proxy/rate-profile.ts'

/** Heap in MiB after two full collections (gc exposed at run time, no flag needed). */
export function heapMiB (): number {
  const gc = (globalThis as { gc?: () => void }).gc ?? (() => {
    setFlagsFromString('--expose-gc')
    return runInNewContext('gc') as () => void
  })()
  gc()
  gc()
  return Math.round(process.memoryUsage().heapUsed / 1048576 * 10) / 10
}

/** The i-th distinct client: IPv4 and IPv6 alternately (an IPv6 attacker has addresses to spare). */
export function clientIp (i: number): string {
  return i % 2 === 0
    ? `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`
    : `2001:db8:${(i >> 16).toString(16)}::${(i & 0xffff).toString(16)}`
}

/** Timers that never fire: the attacks below decide when time passes. */
const FROZEN: RateLimitTimers = { setTimeout: () => 0, clearTimeout: () => {} }

function tracked (limiter: RateLimiter): number {
  return limiter.snapshot({ top: 0 }).reduce((n, p) => n + p.trackedIps, 0)
}

export interface DistinctIpFlood {
  ips: number
  peakTracked: number
  evicted: number
  heapBaseMiB: number
  heapPeakMiB: number
  ms: number
}

/**
 * `ips` distinct client IPs, each one request, all within one instant (so no entry
 * can expire: the worst case for the map of tracked IPs), through a bucket profile.
 * `maxTrackedIps` overrides the limiter's cap.
 */
export function floodDistinctIps (options: { ips: number, maxTrackedIps?: number }): DistinctIpFlood {
  const wp = { ...unlimitedProfile('wp'), concurrentMaxRequests: 8, limitBurstRequests: 20, limitRequestsPerSecond: 5, limitMaxDelayMs: 2000 }
  const extra = options.maxTrackedIps === undefined ? {} : { maxTrackedIps: options.maxTrackedIps }
  const limiter = createRateLimiter({ profiles: [wp], now: () => 0, timers: FROZEN, sweepIntervalMs: 60_000, ...extra })
  const heapBaseMiB = heapMiB()
  let peakTracked = 0
  const t0 = performance.now()
  for (let i = 0; i < options.ips; i++) {
    const a = limiter.admit(clientIp(i), 'wp')
    if (a.kind === 'go') a.release()
    if (i % 10_000 === 9_999) peakTracked = Math.max(peakTracked, tracked(limiter))
  }
  const ms = Math.round(performance.now() - t0)
  peakTracked = Math.max(peakTracked, tracked(limiter))
  const heapPeakMiB = heapMiB()
  const evicted = limiter.snapshot({ top: 0 })[0].totals.evicted ?? 0
  limiter.close()
  return { ips: options.ips, peakTracked, evicted, heapBaseMiB, heapPeakMiB, ms }
}

export interface QueueFlood {
  requests: number
  /** Requests that went into the wait line. */
  waiting: number
  /** Requests answered 429 at once. */
  refusedAtOnce: number
  heapBaseMiB: number
  heapPeakMiB: number
  /** Time to take every waiting request out of the line, in random order (clients leaving). */
  cancelMs: number
  /** The oldest waiting request took over the freed slot. */
  fair: boolean
}

/**
 * One client IP sends `requests` at once to a profile allowing one in flight with a
 * long overflow wait; then every waiting client but the oldest leaves, in random
 * order, and the slot is freed. `maxQueuedPerIp` raises the per-IP cap (to time
 * removal from a long line).
 */
export async function floodOneIpQueue (options: { requests: number, maxQueuedPerIp?: number }): Promise<QueueFlood> {
  const single = { ...unlimitedProfile('single'), concurrentMaxRequests: 1, concurrentOverflowTimeoutMs: 3_600_000 }
  const extra = options.maxQueuedPerIp === undefined ? {} : { maxQueuedPerIp: options.maxQueuedPerIp }
  const limiter = createRateLimiter({ profiles: [single], now: () => 0, timers: FROZEN, ...extra })
  const heapBaseMiB = heapMiB()
  const first = limiter.admit('203.0.113.9', 'single')
  const waits: Admission[] = []
  let refusedAtOnce = 0
  for (let i = 1; i < options.requests; i++) {
    const a = limiter.admit('203.0.113.9', 'single')
    if (a.kind === 'wait') waits.push(a)
    else if (a.kind === 'refuse') refusedAtOnce++
  }
  const heapPeakMiB = heapMiB()
  const oldest = waits.shift()
  // Fisher-Yates with a fixed LCG: the same order on every run.
  let seed = 12345
  for (let i = waits.length - 1; i > 0; i--) {
    seed = (seed * 1103515245 + 12345) % 2147483648
    const j = seed % (i + 1)
    const tmp = waits[i]
    waits[i] = waits[j]
    waits[j] = tmp
  }
  const t0 = performance.now()
  for (const w of waits) if (w.kind === 'wait') w.cancel()
  const cancelMs = Math.round(performance.now() - t0)
  let verdict: Verdict | undefined
  if (oldest?.kind === 'wait') void oldest.promise.then((v) => { verdict = v })
  if (first.kind === 'go') first.release()
  await new Promise<void>((resolve) => { setImmediate(resolve) })
  const fair = oldest === undefined || verdict?.kind === 'go'
  if (verdict?.kind === 'go') verdict.release()
  limiter.close()
  return { requests: options.requests, waiting: waits.length + (oldest === undefined ? 0 : 1), refusedAtOnce, heapBaseMiB, heapPeakMiB, cancelMs, fair }
}

export interface ThrottleChurn {
  keys: number
  /** Keys the throttle held at the end (undefined if it does not say). */
  heldKeys: number | undefined
  heapBaseMiB: number
  heapPeakMiB: number
  ms: number
}

/**
 * `keys` distinct domain keys (routes churning through reloads), one failure each,
 * 1 ms apart on a 1 s throttle window: the throttle map must not keep them all.
 */
export function churnLogThrottle (options: { keys: number }): ThrottleChurn {
  let now = 0
  const throttle = createLogThrottle(1000, () => now)
  const heapBaseMiB = heapMiB()
  const t0 = performance.now()
  for (let i = 0; i < options.keys; i++) {
    throttle.admit(`vm-${i}.example.com upstream_connect`)
    now += 1
  }
  const ms = Math.round(performance.now() - t0)
  const heapPeakMiB = heapMiB()
  const heldKeys = (throttle as { size?: number }).size
  return { keys: options.keys, heldKeys, heapBaseMiB, heapPeakMiB, ms }
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { ips: { type: 'string', default: '1000000' }, queue: { type: 'string', default: '100000' }, keys: { type: 'string', default: '1000000' } } })
  const report = {
    node: process.version,
    distinctIps: floodDistinctIps({ ips: Number(values.ips) }),
    oneIpQueue: await floodOneIpQueue({ requests: Number(values.queue) }),
    oneIpQueueUncapped: await floodOneIpQueue({ requests: Number(values.queue), maxQueuedPerIp: Number(values.queue) }),
    logThrottle: churnLogThrottle({ keys: Number(values.keys) })
  }
  process.stdout.write(JSON.stringify(report, null, 2) + '\n')
}
