/**
 * @module test/proxy/rate-limit-fake-clock
 * A manual clock and timer queue for the rate-limiter tests: time moves only in
 * `advance()`, which fires due timers in order, each at its own instant.
 */
import type { RateLimitTimers } from '../../proxy/rate-limit.ts'

interface FakeTimer { at: number, fn: () => void }

/** Deterministic time for `createRateLimiter({ now, timers })`. */
export class FakeClock {
  #t: number
  #seq = 0
  readonly #timers = new Map<number, FakeTimer>()

  constructor (start = 1_000) {
    this.#t = start
  }

  readonly now = (): number => this.#t

  readonly timers: RateLimitTimers = {
    setTimeout: (fn, ms) => {
      const id = ++this.#seq
      this.#timers.set(id, { at: this.#t + Math.max(0, ms), fn })
      return id
    },
    clearTimeout: (handle) => { this.#timers.delete(handle as number) }
  }

  /** Timers not yet fired. */
  get pendingTimers (): number {
    return this.#timers.size
  }

  /** Moves time forward by `ms`, firing every timer due on the way (timers set meanwhile included). */
  advance (ms: number): void {
    const target = this.#t + ms
    for (;;) {
      let nextId = -1
      let next: FakeTimer | undefined
      for (const [id, timer] of this.#timers) {
        if (timer.at <= target && (next === undefined || timer.at < next.at)) {
          nextId = id
          next = timer
        }
      }
      if (next === undefined) break
      this.#timers.delete(nextId)
      this.#t = next.at
      next.fn()
    }
    this.#t = target
  }
}

/** Lets settled promises run their callbacks (an event-loop turn, not a sleep). */
export async function flush (): Promise<void> {
  await new Promise<void>((resolve) => { setImmediate(resolve) })
}
