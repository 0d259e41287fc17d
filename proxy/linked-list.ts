/**
 * @module proxy/linked-list
 * A doubly linked FIFO whose nodes the caller keeps, so that an entry leaves the
 * middle of the list in O(1) (a waiter that gave up, a deadline that was met).
 * Used by the upstream slot queue and the deadline queue.
 */

/** One entry; `list` is undefined once it has left its list. */
export interface ListNode<T> {
  readonly value: T
  prev: ListNode<T> | undefined
  next: ListNode<T> | undefined
  list: LinkedList<T> | undefined
}

export class LinkedList<T> {
  head: ListNode<T> | undefined = undefined
  tail: ListNode<T> | undefined = undefined
  size = 0

  /** Appends `value` and returns its node (keep it to remove the entry later). */
  push (value: T): ListNode<T> {
    const node: ListNode<T> = { value, prev: this.tail, next: undefined, list: this }
    if (this.tail === undefined) this.head = node
    else this.tail.next = node
    this.tail = node
    this.size++
    return node
  }

  /** Removes `node` if it is still in this list; false when it had already left. */
  remove (node: ListNode<T>): boolean {
    if (node.list !== this) return false
    if (node.prev === undefined) this.head = node.next
    else node.prev.next = node.next
    if (node.next === undefined) this.tail = node.prev
    else node.next.prev = node.prev
    node.prev = undefined
    node.next = undefined
    node.list = undefined
    this.size--
    return true
  }

  /** Removes and returns the oldest entry. */
  shift (): T | undefined {
    const node = this.head
    if (node === undefined) return undefined
    this.remove(node)
    return node.value
  }
}
