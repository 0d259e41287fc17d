/**
 * @module proxy/worker-ipc
 * Requests and notices between the primary and its workers over Node's IPC
 * channel (child_process.fork). One peer per channel: `request(op, body)`
 * resolves with the other side's answer, `notify(op, body)` expects none, and
 * `handle(op, fn)` answers the other side. Messages sent within one tick go as
 * one batch: a rate-limited request costs two small messages, and a batch keeps
 * the per-message cost of the channel (a JSON encode and a write) off the hot path.
 */
import type { ChildProcess } from 'node:child_process'
import type { Socket } from 'node:net'

/** An answer that failed on the other side, or a channel that closed first. */
export class WorkerIpcError extends Error {
  readonly code: 'IPC_CLOSED' | 'IPC_REMOTE' | 'IPC_TIMEOUT'
  constructor (code: WorkerIpcError['code'], message: string) {
    super(message)
    this.name = 'WorkerIpcError'
    this.code = code
  }
}

type Handler = (body: unknown) => unknown

interface Wire {
  /** Batched entries: [kind, id, op, body], kind 'q' request, 'a' answer, 'e' error answer, 'n' notice. */
  readonly vmfront: Array<[string, number, string, unknown]>
}

/** The side of a channel: process (in a worker) or the ChildProcess (in the primary). */
export interface IpcChannel {
  send (message: unknown, handle?: unknown, options?: unknown, callback?: (err: Error | null) => void): boolean
  on (event: 'message', fn: (message: unknown, handle?: unknown) => void): unknown
  on (event: 'disconnect', fn: () => void): unknown
  readonly connected?: boolean
}

export interface IpcPeer {
  request<T = unknown>(op: string, body?: unknown, timeoutMs?: number): Promise<T>
  notify (op: string, body?: unknown): void
  handle (op: string, fn: Handler): void
  /** Sends a listening socket's handle with a notice (not batched). */
  sendHandle (op: string, body: unknown, handle: unknown): Promise<void>
  /** Handles that arrive with `sendHandle`. */
  onHandle (op: string, fn: (body: unknown, handle: Socket | undefined) => void): void
  /** Fails every pending request (the channel is gone). */
  close (): void
}

function isWire (m: unknown): m is Wire {
  return typeof m === 'object' && m !== null && Array.isArray((m as Wire).vmfront)
}

/** Wraps one IPC channel. */
export function createIpcPeer (channel: IpcChannel | ChildProcess): IpcPeer {
  const ch = channel as IpcChannel
  const handlers = new Map<string, Handler>()
  const handleHandlers = new Map<string, (body: unknown, handle: Socket | undefined) => void>()
  const pending = new Map<number, { resolve: (v: any) => void, reject: (e: Error) => void, timer?: NodeJS.Timeout }>()
  let nextId = 1
  let batch: Wire['vmfront'] = []
  let scheduled = false
  let closed = false

  const flush = (): void => {
    scheduled = false
    if (batch.length === 0) return
    const out = batch
    batch = []
    if (closed || ch.connected === false) return
    try {
      ch.send({ vmfront: out })
    } catch { /* the channel closed under us: 'disconnect' fails the requests */ }
  }
  const queue = (entry: [string, number, string, unknown]): void => {
    batch.push(entry)
    if (!scheduled) {
      scheduled = true
      setImmediate(flush)
    }
  }
  const answer = (id: number, op: string, fn: Handler, body: unknown): void => {
    let result: unknown
    try {
      result = fn(body)
    } catch (err) {
      queue(['e', id, op, (err as Error).message])
      return
    }
    if (result instanceof Promise) {
      result.then((v) => { queue(['a', id, op, v]) }, (err: unknown) => { queue(['e', id, op, (err as Error).message ?? String(err)]) })
    } else {
      queue(['a', id, op, result])
    }
  }

  ch.on('message', (message: unknown, handle?: unknown) => {
    if (!isWire(message)) {
      const m = message as { vmfrontHandle?: string, body?: unknown }
      if (typeof m?.vmfrontHandle === 'string') handleHandlers.get(m.vmfrontHandle)?.(m.body, handle as Socket | undefined)
      return
    }
    for (const [kind, id, op, body] of message.vmfront) {
      if (kind === 'q' || kind === 'n') {
        const fn = handlers.get(op)
        if (kind === 'n') {
          // A notice has no answer to fail: its handler's error (sync or async) stops here.
          try {
            const result = fn?.(body)
            if (result instanceof Promise) result.catch(() => {})
          } catch { /* as above */ }
        } else if (fn === undefined) queue(['e', id, op, `no handler for "${op}"`])
        else answer(id, op, fn, body)
        continue
      }
      const p = pending.get(id)
      if (p === undefined) continue
      pending.delete(id)
      if (p.timer !== undefined) clearTimeout(p.timer)
      if (kind === 'a') p.resolve(body)
      else p.reject(new WorkerIpcError('IPC_REMOTE', String(body)))
    }
  })
  const close = (): void => {
    if (closed) return
    closed = true
    for (const p of pending.values()) {
      if (p.timer !== undefined) clearTimeout(p.timer)
      p.reject(new WorkerIpcError('IPC_CLOSED', 'the other process is gone'))
    }
    pending.clear()
  }
  ch.on('disconnect', close)

  return {
    request<T>(op: string, body?: unknown, timeoutMs?: number): Promise<T> {
      if (closed) return Promise.reject(new WorkerIpcError('IPC_CLOSED', 'the other process is gone'))
      const id = nextId++
      return new Promise<T>((resolve, reject) => {
        const entry: { resolve: (v: any) => void, reject: (e: Error) => void, timer?: NodeJS.Timeout } = { resolve, reject }
        if (timeoutMs !== undefined) {
          entry.timer = setTimeout(() => {
            pending.delete(id)
            reject(new WorkerIpcError('IPC_TIMEOUT', `no answer to "${op}" within ${timeoutMs} ms`))
          }, timeoutMs)
        }
        pending.set(id, entry)
        queue(['q', id, op, body])
      })
    },
    notify (op, body) {
      if (!closed) queue(['n', 0, op, body])
    },
    handle (op, fn) { handlers.set(op, fn) },
    sendHandle (op, body, handle) {
      return new Promise((resolve, reject) => {
        ch.send({ vmfrontHandle: op, body }, handle, { keepOpen: true }, (err) => { err === null ? resolve() : reject(err) })
      })
    },
    onHandle (op, fn) { handleHandlers.set(op, fn) },
    close
  }
}
