/**
 * @module proxy/forward
 * Forwards one HTTP request to a VM over pooled keep-alive HTTP/1.1 connections.
 * It drives undici's dispatcher directly: response chunks are written straight to
 * the client's response with backpressure (pause/resume), with no intermediate
 * stream objects, and request bodies are streamed, never buffered.
 */
import type { ServerResponse } from 'node:http'
import type { Http2ServerResponse } from 'node:http2'
import { createRequire } from 'node:module'
import type { ClientRequest, ClientResponse, ForwardOutcome, ForwardStats, UpstreamFailure } from './http-types.ts'
import type { Agent as AgentType, Dispatcher } from 'undici'
import { downstreamHeaders } from './headers.ts'
import { ProxyError } from './errors.ts'
import { DeadlineQueue, type Deadline } from './deadline-queue.ts'
import { UpstreamSlots, type SlotWaiter, type SlotTicket } from './upstream-slots.ts'

/**
 * undici's Agent alone, not its index: the index also loads fetch, WebSocket, the cache
 * and cookies (about 90 more files; measured: 3.5 MiB of RSS in every worker), none of
 * which a forwarder uses. Same module as the index's Agent (one require cache).
 */
const Agent = createRequire(import.meta.url)('undici/lib/dispatcher/agent.js') as typeof AgentType
type Agent = AgentType

export interface ForwarderOptions {
  connectTimeoutMs: number
  /** Time to the response headers (504 when exceeded). */
  responseTimeoutMs: number
  /** Longest silence inside a response body. */
  idleTimeoutMs: number
  keepAliveMs: number
  maxConnectionsPerTarget: number
}


/** Sends a request to an origin and writes the answer into the client response. */
export interface Forwarder {
  forward (
    req: ClientRequest, res: ClientResponse, origin: string, path: string, headers: string[],
    onError: (outcome: ForwardOutcome) => void, stats?: ForwardStats
  ): void
  /** The dispatcher, shared with the WebSocket path's pool bookkeeping. */
  readonly dispatcher: Dispatcher
  close (): Promise<void>
}

/** Maps a transport error to a status and a failure reason. */
export function classifyUpstreamError (err: Error & { code?: string }): { status: number, failure: UpstreamFailure } {
  switch (err.code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'ETIMEDOUT':
      return { status: 502, failure: 'connect_timeout' }
    case 'ECONNREFUSED':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EADDRNOTAVAIL':
      return { status: 502, failure: 'refused' }
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'PROXY_UPSTREAM_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
      return { status: 504, failure: 'timeout' }
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return { status: 502, failure: 'dns' }
    case 'HPE_INVALID_CONSTANT':
    case 'HPE_INVALID_HEADER_TOKEN':
    case 'UND_ERR_INFO':
    case 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH':
      return { status: 502, failure: 'protocol' }
    default:
      return { status: 502, failure: 'reset' }
  }
}

/**
 * Writes the response head for HTTP/1.1 clients (flat header list, reason phrase
 * kept) or HTTP/2 clients (header object; HTTP/2 has no reason phrase).
 */
export function writeResponseHead (res: ClientResponse, status: number, headers: string[], message?: string): void {
  if (!('stream' in res)) {
    if (message === undefined) (res as ServerResponse).writeHead(status, headers)
    else (res as ServerResponse).writeHead(status, message, headers)
    return
  }
  const object: Record<string, string | string[]> = {}
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i].toLowerCase()
    const prev = object[name]
    if (prev === undefined) object[name] = headers[i + 1]
    else if (Array.isArray(prev)) prev.push(headers[i + 1])
    else object[name] = [prev, headers[i + 1]]
  }
  (res as Http2ServerResponse).writeHead(status, object)
}

/** Whether the client's side of the exchange is gone (HTTP/1.1 response or HTTP/2 stream). */
function clientGone (res: ClientResponse): boolean {
  return (res as ServerResponse).destroyed === true || ('stream' in res && res.stream.destroyed)
}

/** Codes of the aborts the proxy itself causes; both are the client's doing. */
const CLIENT_ABORT = 'VMFRONT_CLIENT_ABORT'
const CLIENT_STALLED = 'VMFRONT_CLIENT_STALLED'

function clientError (code: typeof CLIENT_ABORT | typeof CLIENT_STALLED): Error & { code: string } {
  return Object.assign(new Error(code === CLIENT_ABORT ? 'client went away' : 'client stopped reading for timeouts.upstream_idle'), { code })
}

/** What every ForwardHandler of one forwarder shares. */
interface ForwardContext {
  readonly agent: Agent
  readonly slots: UpstreamSlots
  /** From dispatch to the response head: `timeouts.upstream_response`. */
  readonly responseDeadlines: DeadlineQueue
  /** While a response waits for a client that does not read: `timeouts.upstream_idle`. */
  readonly stallDeadlines: DeadlineQueue
}

/**
 * One request's life: waits for a slot of its origin, goes to undici, streams the
 * answer into the client response with backpressure. Whatever the client does, the
 * upstream request ends with it: a client gone while the request waits for a slot
 * leaves the queue, one gone before undici hands over its controller is aborted as
 * soon as it does, and one that stops reading is cut after `upstream_idle` (undici
 * stops its body timeout while a response is paused). The outcome is reported once.
 */
class ForwardHandler implements Dispatcher.DispatchHandler, SlotWaiter {
  private readonly ctx: ForwardContext
  private readonly res: ClientResponse
  private readonly options: Dispatcher.DispatchOptions & { origin: string }
  private readonly report: (outcome: ForwardOutcome) => void
  private readonly stats: ForwardStats | undefined
  private controller: Dispatcher.DispatchController | undefined = undefined
  /** Set while waiting for a slot. */
  private ticket: SlotTicket | undefined = undefined
  private holdsSlot = false
  private responseDeadline: Deadline | undefined = undefined
  private stallDeadline: Deadline | undefined = undefined
  /** An abort decided before undici handed over the controller. */
  private pendingAbort: Error | undefined = undefined
  private waitingDrain = false
  private started = false
  /** The upstream request is over (or never went out). */
  private finished = false
  private reported = false
  private readonly onClientClose = (): void => { this.clientLeft() }
  private readonly onClientDrain = (): void => { this.clientDrained() }
  private readonly dispatchLater = (): void => { this.dispatch() }
  private readonly resumeLater = (): void => { if (!this.finished && !this.waitingDrain) this.controller?.resume() }

  constructor (ctx: ForwardContext, res: ClientResponse, options: Dispatcher.DispatchOptions & { origin: string }, onError: (outcome: ForwardOutcome) => void, stats: ForwardStats | undefined) {
    this.ctx = ctx
    this.res = res
    this.options = options
    this.report = onError
    this.stats = stats
  }

  /** Starts the deadline and takes (or queues for) a slot. */
  begin (): void {
    if (clientGone(this.res)) {
      this.finished = true
      this.outcome({ status: 499, failure: 'client_abort' })
      return
    }
    this.res.once('close', this.onClientClose)
    this.responseDeadline = this.ctx.responseDeadlines.start(onResponseDeadline, this)
    this.ticket = this.ctx.slots.acquire(this.options.origin, this)
    if (this.ticket === undefined) this.dispatch()
  }

  onSlot (): void {
    this.ticket = undefined
    this.holdsSlot = true
    // The slot is freed inside an undici callback, while its parser runs; dispatching
    // from there can start another connection's parser (undici asserts against that).
    queueMicrotask(this.dispatchLater)
  }

  private dispatch (): void {
    this.holdsSlot = true
    if (this.pendingAbort !== undefined) {
      // The client left (or the deadline passed) between the slot and this turn.
      this.onResponseError(undefined, this.pendingAbort)
      return
    }
    try {
      this.ctx.agent.dispatch(this.options, this)
    } catch (err) {
      this.onResponseError(undefined, err as Error)
    }
  }

  private outcome (outcome: ForwardOutcome): void {
    if (this.reported) return
    this.reported = true
    this.report(outcome)
  }

  /** Ends the upstream side with `err`: out of the queue, or aborted in undici. */
  private abort (err: Error): void {
    if (this.finished) return
    if (this.ticket !== undefined) {
      this.ctx.slots.cancel(this.options.origin, this.ticket)
      this.ticket = undefined
      this.onResponseError(undefined, err)
      return
    }
    if (this.controller === undefined) {
      // Dispatched, not yet written: undici hands over the controller when it writes.
      this.pendingAbort ??= err
      return
    }
    if (!this.controller.aborted) this.controller.abort(err)
  }

  private clientLeft (): void {
    if (!this.finished) this.abort(clientError(CLIENT_ABORT))
  }

  private clientDrained (): void {
    this.waitingDrain = false
    this.ctx.stallDeadlines.cancel(this.stallDeadline)
    this.stallDeadline = undefined
    // 'drain' can be emitted by a write made inside another response's undici
    // callback; resuming there would run a second parser inside the first.
    if (!this.finished) queueMicrotask(this.resumeLater)
  }

  /** No response head within upstream_response of dispatch (slot wait included). */
  responseTimedOut (): void {
    this.responseDeadline = undefined
    if (this.finished || this.started) return
    const err = new ProxyError('PROXY_UPSTREAM_TIMEOUT', 'no response from the VM within timeouts.upstream_response', { status: 504 })
    // Answer now even if undici has not handed over its controller yet (still connecting).
    if (this.ticket === undefined && this.controller === undefined) this.outcome({ status: 504, failure: 'timeout', error: err })
    this.abort(err)
  }

  /** The client read nothing for upstream_idle while the VM waited. */
  clientStalled (): void {
    this.stallDeadline = undefined
    if (!this.finished) this.abort(clientError(CLIENT_STALLED))
  }

  onRequestStart (controller: Dispatcher.DispatchController): void {
    this.controller = controller
    if (this.pendingAbort !== undefined) controller.abort(this.pendingAbort)
  }

  onResponseStart (controller: Dispatcher.DispatchController, statusCode: number, _headers: unknown, statusMessage?: string): void {
    if (statusCode < 200) return
    this.ctx.responseDeadlines.cancel(this.responseDeadline)
    this.responseDeadline = undefined
    if (this.reported || clientGone(this.res)) {
      this.abort(clientError(CLIENT_ABORT))
      return
    }
    this.started = true
    if (this.stats !== undefined) this.stats.headersAt = performance.now()
    const raw = (controller.rawHeaders ?? []) as (Buffer | string)[]
    writeResponseHead(this.res, statusCode, downstreamHeaders(raw), statusMessage)
  }

  onResponseData (controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (clientGone(this.res)) {
      this.abort(clientError(CLIENT_ABORT))
      return
    }
    if (this.stats !== undefined) this.stats.bytesOut += chunk.length
    if ((this.res as ServerResponse).write(chunk)) return
    controller.pause()
    if (!this.waitingDrain) {
      this.waitingDrain = true
      this.res.once('drain', this.onClientDrain)
    }
    this.stallDeadline ??= this.ctx.stallDeadlines.start(onClientStall, this)
  }

  onResponseEnd (): void {
    this.settle()
    this.res.end()
  }

  onResponseError (_controller: Dispatcher.DispatchController | undefined, err: Error & { code?: string }): void {
    this.settle()
    if (this.reported) return
    if (err.code === CLIENT_ABORT || err.code === CLIENT_STALLED || clientGone(this.res)) {
      this.outcome({ status: 499, failure: 'client_abort', error: err })
      // A stalled client is cut: its response can no longer complete.
      if (err.code === CLIENT_STALLED) this.res.destroy()
      return
    }
    if (this.started) {
      // Headers are gone: all we can do is cut the response so the client sees it failed.
      this.outcome({ status: this.res.statusCode, failure: classifyUpstreamError(err).failure, error: err })
      this.res.destroy(err)
      return
    }
    const { status, failure } = classifyUpstreamError(err)
    this.outcome({ status, failure, error: err })
  }

  /** The upstream request is over: deadlines stop and the slot goes to the next waiter. */
  private settle (): void {
    if (this.finished) return
    this.finished = true
    this.ctx.responseDeadlines.cancel(this.responseDeadline)
    this.ctx.stallDeadlines.cancel(this.stallDeadline)
    this.responseDeadline = undefined
    this.stallDeadline = undefined
    if (this.holdsSlot) {
      this.holdsSlot = false
      this.ctx.slots.release(this.options.origin)
    }
  }
}

function onResponseDeadline (handler: ForwardHandler): void {
  handler.responseTimedOut()
}

function onClientStall (handler: ForwardHandler): void {
  handler.clientStalled()
}

/** Creates the forwarder and its connection pools (one per VM origin). */
export function createForwarder (options: ForwarderOptions): Forwarder {
  const agent = new Agent({
    connect: { timeout: options.connectTimeoutMs },
    headersTimeout: options.responseTimeoutMs,
    bodyTimeout: options.idleTimeoutMs,
    keepAliveTimeout: options.keepAliveMs,
    keepAliveMaxTimeout: Math.max(options.keepAliveMs, 1000),
    connections: options.maxConnectionsPerTarget,
    pipelining: 1
  })
  const ctx: ForwardContext = {
    agent,
    // In-flight requests per origin never exceed the pool, so undici never queues.
    slots: new UpstreamSlots(options.maxConnectionsPerTarget),
    responseDeadlines: new DeadlineQueue(options.responseTimeoutMs),
    stallDeadlines: new DeadlineQueue(options.idleTimeoutMs)
  }
  return {
    dispatcher: agent,
    forward (req, res, origin, path, headers, onError, stats): void {
      const te = req.headers['transfer-encoding']
      const cl = req.headers['content-length']
      // HTTP/2 frames its body with DATA frames and END_STREAM, not a header: a request
      // without Content-Length still has a body unless its HEADERS ended the stream.
      const hasBody = 'stream' in req
        ? (cl !== undefined ? cl !== '0' : !req.stream.endAfterHeaders)
        : te !== undefined || (cl !== undefined && cl !== '0')
      const method = req.method ?? 'GET'
      const handler = new ForwardHandler(ctx, res, {
        origin,
        path,
        method,
        headers,
        body: hasBody ? req : null,
        // A streamed body cannot be replayed: never retry on another connection.
        idempotent: !hasBody && (method === 'GET' || method === 'HEAD' || method === 'OPTIONS')
      }, onError, stats)
      const start = (): void => {
        if (te === undefined) {
          handler.begin()
          return
        }
        // The parser emits the request before it parses the rest of the packet: one
        // turn later, a malformed first chunk has already failed the request (400
        // from the listener), and nothing of it goes to the VM.
        setImmediate(() => {
          if (req.destroyed || res.destroyed || req.socket?.destroyed === true) return
          handler.begin()
        })
      }
      if ('stream' in res || res.socket !== null) {
        start()
        return
      }
      // A pipelined HTTP/1.1 request: its response cannot be sent before the ones
      // ahead of it, so it goes to the VM only when it is its turn. Forwarded at once,
      // it would hold a VM connection, paused, for as long as the client takes to
      // read everything before it (slowhttptest -k).
      const onTurn = (): void => {
        res.off('close', onGone)
        start()
      }
      const onGone = (): void => { res.off('socket', onTurn) }
      res.once('socket', onTurn)
      res.once('close', onGone)
    },
    async close (): Promise<void> {
      ctx.responseDeadlines.close()
      ctx.stallDeadlines.close()
      await agent.close()
    }
  }
}
