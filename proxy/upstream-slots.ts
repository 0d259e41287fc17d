/**
 * @module proxy/upstream-slots
 * At most `max` requests in flight per VM origin; the rest wait here, in order.
 * Waiting here rather than in undici's pool queue means a request whose client left
 * or whose deadline passed simply leaves the queue (O(1)) without ever reaching a
 * connection: undici only learns of a request once it can write it, and aborting it
 * then would cost the connection it was given.
 */
import { LinkedList, type ListNode } from './linked-list.ts'

/** A queued request; `onSlot` runs when it is its turn (the slot is then its own). */
export interface SlotWaiter {
  onSlot (): void
}

interface OriginSlots {
  active: number
  readonly waiting: LinkedList<SlotWaiter>
}

/** A place in an origin's queue; pass it to `cancel` to leave. */
export type SlotTicket = ListNode<SlotWaiter>

export class UpstreamSlots {
  readonly max: number
  /** Only origins with requests in flight or waiting have an entry. */
  private readonly origins = new Map<string, OriginSlots>()

  constructor (max: number) {
    this.max = max
  }

  /**
   * Takes a slot for `origin`: undefined when one was free (the caller goes ahead
   * now), or a ticket when `waiter` was queued and will be called by `release`.
   */
  acquire (origin: string, waiter: SlotWaiter): SlotTicket | undefined {
    let slots = this.origins.get(origin)
    if (slots === undefined) {
      slots = { active: 0, waiting: new LinkedList() }
      this.origins.set(origin, slots)
    }
    if (slots.active < this.max) {
      slots.active++
      return undefined
    }
    return slots.waiting.push(waiter)
  }

  /** Leaves the queue; false when the ticket was already granted or cancelled. */
  cancel (origin: string, ticket: SlotTicket): boolean {
    const slots = this.origins.get(origin)
    if (slots === undefined || !slots.waiting.remove(ticket)) return false
    if (slots.active === 0 && slots.waiting.size === 0) this.origins.delete(origin)
    return true
  }

  /** Gives a finished request's slot to the next waiter, or frees it. */
  release (origin: string): void {
    const slots = this.origins.get(origin)
    if (slots === undefined) return
    const next = slots.waiting.shift()
    if (next !== undefined) {
      next.onSlot()
      return
    }
    slots.active--
    if (slots.active <= 0 && slots.waiting.size === 0) this.origins.delete(origin)
  }

  /** Requests in flight and waiting for `origin` (metrics, dump, tests). */
  stats (origin: string): { active: number, waiting: number } {
    const slots = this.origins.get(origin)
    return { active: slots?.active ?? 0, waiting: slots?.waiting.size ?? 0 }
  }
}
