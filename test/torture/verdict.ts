/**
 * @module test/torture/verdict
 * What makes an attack's row FAIL: the proxy died or hung on SIGTERM, the normal
 * client failed or was slow, fds or connections to the VM stayed after the settle
 * time, the heap after a full GC grew past a bound, or the attack reported a
 * finding of its own.
 */
import { FD_TOLERANCE } from './stand.ts'
import type { NormalStats } from './normal-client.ts'
import type { AttackOutcome, Sample } from './types.ts'

/**
 * The V8 heap after a full GC may exceed its size before the attack by this much
 * (caches, compiled code, metrics series). RSS is only reported: it keeps the peak an
 * attack caused, since the allocator rarely returns memory.
 */
export const HEAP_TOLERANCE_KIB = 16 * 1024
/** RSS growth worth a remark (not a failure on its own). */
export const RSS_REMARK_KIB = 100 * 1024

export interface Thresholds {
  /** The normal client's p99 above this fails the row. */
  maxP99Ms: number
}

export interface Measured {
  alive: boolean
  exit: number | string | null
  normal: NormalStats
  before: Sample
  after: Sample
  settled: boolean
  outcome: AttackOutcome
}

export interface Verdict {
  pass: boolean
  leakedFds: number
  leakedUpstream: number
  reasons: string[]
}

/** "ESTAB 250, FIN-WAIT-2 6; 250 with unread data". */
export function describeUpstream (s: Sample): string {
  if (s.upstreamWithUnread < 0) return 'counted by the VM: ss missing'
  const states = Object.entries(s.upstreamStates).map(([k, v]) => `${k} ${v}`).join(', ')
  return `${states === '' ? 'none' : states}; ${s.upstreamWithUnread} with unread data`
}

export function judge (m: Measured, thresholds: Thresholds): Verdict {
  const reasons: string[] = []
  const leakedFds = Math.max(0, m.after.fds - m.before.fds)
  const leakedUpstream = Math.max(0, m.after.upstream - m.before.upstream)
  if (!m.alive) reasons.push(`the proxy died during the attack (${String(m.exit)})`)
  else if (m.exit !== 0) reasons.push(`the proxy did not stop cleanly on SIGTERM after the attack: ${String(m.exit)}`)
  if (m.normal.failures > 0) reasons.push(`${m.normal.failures} of ${m.normal.requests} normal requests failed (${Object.entries(m.normal.reasons).map(([k, v]) => `${k}: ${v}`).join(', ')})`)
  if (m.normal.p99 > thresholds.maxP99Ms) reasons.push(`normal client p99 ${Math.round(m.normal.p99)} ms > ${thresholds.maxP99Ms} ms`)
  if (leakedUpstream > 0) reasons.push(`${leakedUpstream} connections to the VM still held after the settle time (${describeUpstream(m.after)})`)
  if (leakedFds > FD_TOLERANCE) reasons.push(`${leakedFds} more fds than before the attack`)
  const heapGrown = (m.after.heapUsedKiB ?? 0) + (m.after.externalKiB ?? 0) - (m.before.heapUsedKiB ?? 0) - (m.before.externalKiB ?? 0)
  if (heapGrown > HEAP_TOLERANCE_KIB) reasons.push(`heap + external memory after a full GC grew by ${Math.round(heapGrown / 1024)} MiB (more than ${HEAP_TOLERANCE_KIB / 1024} MiB)`)
  reasons.push(...m.outcome.problems)
  return { pass: reasons.length === 0, leakedFds, leakedUpstream, reasons }
}
