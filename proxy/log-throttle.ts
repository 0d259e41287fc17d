/**
 * @module proxy/log-throttle
 * Keeps a failing upstream from flooding the log: one line per key per interval,
 * carrying how many were suppressed since the last one.
 */

export interface LogThrottle {
  /** -1 when this occurrence is suppressed, else how many were suppressed before it. */
  admit (key: string): number
}

/** Keys are bounded by the caller (route domains × failure reasons). */
export function createLogThrottle (intervalMs: number, now: () => number = Date.now): LogThrottle {
  const state = new Map<string, { last: number, suppressed: number }>()
  return {
    admit (key: string): number {
      const t = now()
      const entry = state.get(key)
      if (entry === undefined) {
        state.set(key, { last: t, suppressed: 0 })
        return 0
      }
      if (t - entry.last < intervalMs) {
        entry.suppressed++
        return -1
      }
      const suppressed = entry.suppressed
      entry.last = t
      entry.suppressed = 0
      return suppressed
    }
  }
}
