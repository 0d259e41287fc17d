/**
 * @module proxy/route-parse-client
 * Runs route-parse-worker in one long-lived worker thread and brings its result
 * back without a long turn on the main thread: the routes come a slice at a time,
 * each slice its own message, so requests are served between slices. A worker
 * that dies fails the request in flight with a message and is replaced on the
 * next use; `close` terminates it (shutdown). A burst of reloads shares one
 * worker; one idle for `idleMs` retires, because its heap keeps what parsing
 * 100,000 routes grew it to (measured: about 190 MiB of RSS).
 */
import { Worker } from 'node:worker_threads'
import { ProxyError } from './errors.ts'
import type { ParseReply, ParseRequest } from './route-parse-worker.ts'
import type { Route, RouteProblem } from './route-table.ts'

/** Routes per message: cloning 2,000 routes costs the main thread about 3 ms. */
export const ROUTES_PER_SLICE = 1_000

export type RemoteParse =
  | { kind: 'unchanged', hash: string }
  | { kind: 'invalid', hash: string, errors: RouteProblem[], errorCount: number, warnings: RouteProblem[], warningCount: number }
  | { kind: 'parsed', hash: string, version: number, format: 'v1' | 'mulch-legacy', count: number, warnings: RouteProblem[], warningCount: number }

export interface RouteParseClient {
  /** Hashes and parses `text` in the worker; `unchanged` when its sha256 is `lastHash`. */
  parse (text: string, lastHash: string | undefined, keepProblems: number): Promise<RemoteParse>
  /**
   * Brings the routes of the last `parsed` result over, `onSlice` once per slice
   * in order (each slice its own event-loop turn), then frees them in the worker.
   */
  take (count: number, onSlice: (routes: Route[], from: number) => void): Promise<void>
  /** Frees the last table in the worker without taking it. */
  release (): void
  /** Whether a worker thread exists now (it retires when idle). */
  running (): boolean
  /** Terminates the worker (shutdown). */
  close (): Promise<void>
}

/** The worker died, did not answer in time, answered wrongly, or the parser is closed. */
export class RouteParseWorkerError extends ProxyError<'ROUTE_PARSE_WORKER'> {
  constructor (message: string) {
    super('ROUTE_PARSE_WORKER', message)
    this.name = 'RouteParseWorkerError'
  }
}

export interface RouteParseClientOptions {
  /** The worker module (tests inject one that crashes); default route-parse-worker.ts. */
  workerUrl?: URL
  /** Told when a worker dies, with the reason. */
  onWorkerExit?: (reason: string) => void
  /**
   * A worker that has not answered by then is terminated and the reload fails
   * (a 32 MiB file parses in a few seconds): a stuck parse must not hold every
   * later reload behind it. Default 60 s.
   */
  answerTimeoutMs?: number
  /** An idle worker is terminated after this long (the next big reload starts one). Default 10 s. */
  idleMs?: number
}

interface Pending {
  resolve: (reply: ParseReply) => void
  reject: (err: Error) => void
}

export function createRouteParseClient (options: RouteParseClientOptions = {}): RouteParseClient {
  const url = options.workerUrl ?? new URL('./route-parse-worker.ts', import.meta.url)
  let worker: Worker | undefined
  let nextId = 1
  const pending = new Map<number, Pending>()
  let closed = false
  const answerTimeoutMs = options.answerTimeoutMs ?? 60_000
  const idleMs = options.idleMs ?? 10_000
  let idleTimer: NodeJS.Timeout | undefined

  function failPending (reason: string): void {
    const err = new RouteParseWorkerError(`the route parse worker stopped (${reason}); a new one starts on the next reload`)
    for (const p of pending.values()) p.reject(err)
    pending.clear()
  }

  /** Ends a worker on purpose (idle, closed): nobody is told it died. */
  async function retire (w: Worker, reason: string): Promise<void> {
    if (worker === w) worker = undefined
    failPending(reason)
    await w.terminate()
  }

  function dead (w: Worker, reason: string): void {
    if (worker !== w) return
    worker = undefined
    failPending(reason)
    if (!closed) options.onWorkerExit?.(reason)
  }

  function start (): Worker {
    if (worker !== undefined) return worker
    const w = new Worker(url)
    w.on('message', (reply: ParseReply) => {
      const p = pending.get(reply.id)
      if (p === undefined) return
      pending.delete(reply.id)
      if (pending.size === 0) {
        w.unref()
        clearTimeout(idleTimer)
        idleTimer = setTimeout(() => { if (pending.size === 0 && worker === w) void retire(w, 'idle') }, idleMs)
        idleTimer.unref()
      }
      p.resolve(reply)
    })
    w.on('error', (err) => { dead(w, `error: ${err.message}`) })
    w.on('exit', (code) => { dead(w, `exit code ${code}`) })
    worker = w
    return w
  }

  function ask (request: ParseRequest & { id: number }): Promise<ParseReply> {
    if (closed) return Promise.reject(new RouteParseWorkerError('the route parser is closed (shutting down)'))
    clearTimeout(idleTimer)
    const w = start()
    // Referenced only while it owes an answer: an idle worker never holds the exit.
    w.ref()
    return new Promise<ParseReply>((resolve, reject) => {
      const timer = setTimeout(() => {
        dead(w, `no answer within ${answerTimeoutMs / 1000} s: terminated`)
        void w.terminate()
      }, answerTimeoutMs)
      timer.unref()
      pending.set(request.id, {
        resolve: (reply) => { clearTimeout(timer); resolve(reply) },
        reject: (err) => { clearTimeout(timer); reject(err) }
      })
      w.postMessage(request)
    })
  }

  function expect<T extends ParseReply['type']> (reply: ParseReply, ...types: T[]): Extract<ParseReply, { type: T }> {
    if (reply.type === 'error') throw new RouteParseWorkerError(`the route parse worker failed: ${reply.message}`)
    if (!(types as string[]).includes(reply.type)) throw new RouteParseWorkerError(`the route parse worker answered "${reply.type}" where ${types.join(' or ')} was expected`)
    return reply as Extract<ParseReply, { type: T }>
  }

  return {
    async parse (text, lastHash, keepProblems) {
      const reply = expect(await ask({ type: 'parse', id: nextId++, text, lastHash, keepProblems }), 'unchanged', 'invalid', 'parsed')
      if (reply.type === 'unchanged') return { kind: 'unchanged', hash: reply.hash }
      if (reply.type === 'invalid') return { kind: 'invalid', hash: reply.hash, errors: reply.errors, errorCount: reply.errorCount, warnings: reply.warnings, warningCount: reply.warningCount }
      return { kind: 'parsed', hash: reply.hash, version: reply.version, format: reply.format, count: reply.count, warnings: reply.warnings, warningCount: reply.warningCount }
    },
    async take (count, onSlice) {
      try {
        for (let from = 0; from < count; from += ROUTES_PER_SLICE) {
          const reply = expect(await ask({ type: 'routes', id: nextId++, from, to: Math.min(count, from + ROUTES_PER_SLICE) }), 'routes')
          onSlice(reply.routes, from)
        }
      } finally {
        this.release()
      }
    },
    release () {
      worker?.postMessage({ type: 'release' } satisfies ParseRequest)
    },
    running: () => worker !== undefined,
    async close () {
      closed = true
      clearTimeout(idleTimer)
      if (worker !== undefined) await retire(worker, 'closed')
    }
  }
}
