/**
 * @module proxy/log-throttle
 * Keeps a failing upstream from flooding the log: one line per key per interval,
 * carrying how many were suppressed since the last one.
 *
 * Keys come from route domains, which churn with reloads, so the state is bounded
 * whatever the input: the Map is kept in the order of each key's last logged line
 * (re-inserted when it logs), so the keys whose window has passed are at its head.
 * Once it holds more than `softKeys`, each new key first drops such keys from the
 * head (amortised O(1): each entry is dropped once); at `maxKeys` the oldest key
 * goes even inside its window. A dropped key loses its pending suppressed count:
 * its next line says 0 (below `softKeys` keys nothing is ever dropped, so a steady
 * set of routes keeps exact counts).
 */

export interface LogThrottle {
  /** -1 when this occurrence is suppressed, else how many were suppressed before it. */
  admit (key: string): number
  /** Keys held now (for tests and the dump). */
  readonly size: number
}

/** Options of `createLogThrottle`. */
export interface LogThrottleOptions {
  /** Above this many keys, a new key drops those whose window has passed. Default 1 024. */
  readonly softKeys?: number
  /** Never more keys than this: the oldest goes first. Default 10 000. */
  readonly maxKeys?: number
}

interface KeyState { last: number, suppressed: number }

export function createLogThrottle (intervalMs: number, now: () => number = Date.now, options: LogThrottleOptions = {}): LogThrottle {
  const maxKeys = Math.max(1, options.maxKeys ?? 10_000)
  const softKeys = Math.min(maxKeys, options.softKeys ?? 1024)
  const state = new Map<string, KeyState>()

  /** Makes room for one new key. */
  function prune (t: number): void {
    if (state.size < softKeys) return
    for (const [key, entry] of state) {
      // Head first: the oldest last-logged line. The first one still inside its
      // window means every later one is too.
      if (state.size >= maxKeys || t - entry.last >= intervalMs) state.delete(key)
      else break
    }
  }

  return {
    admit (key: string): number {
      const t = now()
      const entry = state.get(key)
      if (entry === undefined) {
        prune(t)
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
      // To the tail: the Map stays ordered by last logged line.
      state.delete(key)
      state.set(key, entry)
      return suppressed
    },
    get size () {
      return state.size
    }
  }
}
