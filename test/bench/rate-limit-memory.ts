/**
 * @module test/bench/rate-limit-memory
 * Heap figures and hot-path cost of proxy/rate-limit.ts under a flood of distinct
 * client IPs. Simulated time (no waiting), real heap:
 *   ./node_modules/.bin/node --expose-gc test/bench/rate-limit-memory.ts [--ips 1000000]
 * Prints one JSON object.
 */
import { parseArgs } from 'node:util'
import { createRateLimiter } from '../../proxy/rate-limit.ts'
import type { RateLimiter, RateLimitTimers } from '../../proxy/rate-limit.ts'
import { unlimitedProfile } from '../../proxy/rate-profile.ts'

const { values } = parseArgs({ options: { ips: { type: 'string', default: '1000000' } } })
const IPS = Number(values.ips)
const SWEEP_MS = 1000
const gc = (globalThis as { gc?: () => void }).gc
if (gc === undefined) throw new Error('run with --expose-gc')

function heapMiB (): number {
  gc?.()
  gc?.()
  return Math.round(process.memoryUsage().heapUsed / 1048576 * 10) / 10
}

function clientIp (i: number): string {
  return i % 2 === 0
    ? `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`
    : `2001:db8:${(i >> 16).toString(16)}::${(i & 0xffff).toString(16)}`
}

// Time is simulated; sweeps run when the simulation says so, not on real timers.
let clock = 0
const idle: RateLimitTimers = { setTimeout: () => 0, clearTimeout: () => {} }
const wp = { ...unlimitedProfile('wp'), concurrentMaxRequests: 8, limitBurstRequests: 20, limitRequestsPerSecond: 5, limitMaxDelayMs: 2000, vipList: ['192.0.2.0/24'] }

function limiter (): RateLimiter {
  return createRateLimiter({ profiles: [wp, unlimitedProfile('open')], now: () => clock, timers: idle, sweepIntervalMs: SWEEP_MS })
}

function tracked (l: RateLimiter): number {
  return l.snapshot({ top: 0 }).reduce((n, p) => n + p.trackedIps, 0)
}

function admitRelease (l: RateLimiter, ip: string, profile = 'wp'): void {
  const a = l.admit(ip, profile)
  if (a.kind === 'go') a.release()
}

const out: Record<string, unknown> = { node: process.version, ips: IPS }

// 1. Worst case: every IP arrives within one instant, so nothing can expire yet.
{
  const l = limiter()
  const base = heapMiB()
  const t0 = performance.now()
  for (let i = 0; i < IPS; i++) admitRelease(l, clientIp(i))
  const nsPerNewIp = Math.round((performance.now() - t0) * 1e6 / IPS)
  const peak = heapMiB()
  const peakEntries = tracked(l)
  clock += 60_000
  const s0 = performance.now()
  const removed = l.sweep()
  const sweepMs = Math.round(performance.now() - s0)
  const after = heapMiB()
  out.burst = { nsPerNewIp, baseMiB: base, peakMiB: peak, peakEntries, bytesPerEntry: Math.round((peak - base) * 1048576 / peakEntries), removed, sweepMs, afterSweepMiB: after, entriesAfter: tracked(l) }
  l.close()
}

// 2. A sustained flood: 10,000 new IPs per simulated second, sweep every second.
{
  const l = limiter()
  const base = heapMiB()
  let peakEntries = 0
  let peakMiB = 0
  let maxSweepMs = 0
  let nextSweep = clock + SWEEP_MS
  for (let i = 0; i < IPS; i++) {
    admitRelease(l, clientIp(i))
    clock += 0.1
    if (clock >= nextSweep) {
      peakEntries = Math.max(peakEntries, tracked(l))
      if (i % 100_000 < 10_000) peakMiB = Math.max(peakMiB, heapMiB())
      const s0 = performance.now()
      l.sweep()
      maxSweepMs = Math.max(maxSweepMs, performance.now() - s0)
      nextSweep += SWEEP_MS
    }
  }
  clock += 60_000
  l.sweep()
  out.sustained = { ratePerSec: 10_000, baseMiB: base, peakEntries, peakMiB, maxSweepMs: Math.round(maxSweepMs * 10) / 10, afterMiB: heapMiB(), entriesAfter: tracked(l) }
  l.close()
}

// 3. Hot path, ns per admit (+ release).
{
  const l = limiter()
  const N = 2_000_000
  const time = (fn: (i: number) => void): number => {
    for (let i = 0; i < 100_000; i++) fn(i)
    const t0 = performance.now()
    for (let i = 0; i < N; i++) fn(i)
    return Math.round((performance.now() - t0) * 1e6 / N)
  }
  const hot = ['198.51.100.1', '198.51.100.2', '198.51.100.3', '198.51.100.4']
  out.nsPerAdmitAndRelease = {
    unlimitedProfile: time((i) => { admitRelease(l, hot[i & 3], 'open') }),
    unknownProfileFallback: time((i) => { admitRelease(l, hot[i & 3], 'nope') }),
    vip: time(() => { admitRelease(l, '192.0.2.9') }),
    // Four clients, each at 4.2 requests/s against a 5/s limit: the within-limits path.
    trackedWithinLimits: time((i) => { clock += 60; admitRelease(l, hot[i & 3]) })
  }
  l.close()
}

console.log(JSON.stringify(out, null, 2))
