/**
 * @module proxy/deadline-queue
 * Cheap per-request deadlines of one fixed duration. Deadlines of the same duration
 * expire in the order they were started, so they live in one FIFO and share one
 * native timer, armed for the oldest and re-armed at most once per `resolutionMs`
 * (the idea of undici's lib/util/timers.js: no setTimeout per request). Starting and
 * cancelling a deadline is O(1); a deadline fires up to `resolutionMs` late.
 */
import { LinkedList, type ListNode } from './linked-list.ts'

interface Entry {
  readonly at: number
  readonly fn: (arg: never) => void
  readonly arg: unknown
}

/** A running deadline; pass it to `cancel` when what it guards has happened. */
export type Deadline = ListNode<Entry>

export class DeadlineQueue {
  readonly durationMs: number
  private readonly resolutionMs: number
  private readonly entries = new LinkedList<Entry>()
  private timer: NodeJS.Timeout | undefined = undefined
  private readonly onTimer = (): void => { this.expire() }

  /** `durationMs` 0 disables the queue: `start` returns undefined and nothing fires. */
  constructor (durationMs: number, resolutionMs = Math.min(250, Math.max(1, Math.floor(durationMs / 4)))) {
    this.durationMs = durationMs
    this.resolutionMs = resolutionMs
  }

  /** Calls `fn(arg)` once, `durationMs` from now, unless cancelled first. */
  start<T> (fn: (arg: T) => void, arg: T): Deadline | undefined {
    if (this.durationMs <= 0) return undefined
    const node = this.entries.push({ at: performance.now() + this.durationMs, fn: fn as (arg: never) => void, arg })
    if (this.timer === undefined) this.arm(this.durationMs)
    return node
  }

  /** Stops a deadline; a no-op when it already fired or was cancelled. */
  cancel (deadline: Deadline | undefined): void {
    if (deadline !== undefined) this.entries.remove(deadline)
  }

  /** Pending deadlines (for tests and the dump). */
  get size (): number {
    return this.entries.size
  }

  /** Drops every pending deadline without firing it. */
  close (): void {
    clearTimeout(this.timer)
    this.timer = undefined
    while (this.entries.shift() !== undefined) { /* drop */ }
  }

  private arm (delayMs: number): void {
    this.timer = setTimeout(this.onTimer, Math.max(delayMs, this.resolutionMs))
    this.timer.unref()
  }

  private expire (): void {
    this.timer = undefined
    const now = performance.now()
    try {
      let head = this.entries.head
      while (head !== undefined && head.value.at <= now) {
        this.entries.remove(head)
        const { fn, arg } = head.value
        ;(fn as (arg: unknown) => void)(arg)
        head = this.entries.head
      }
    } finally {
      // Re-armed even if a callback threw, so later deadlines still fire.
      const head = this.entries.head
      if (head !== undefined && this.timer === undefined) this.arm(head.value.at - now)
    }
  }
}
