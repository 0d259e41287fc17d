/**
 * @module proxy/forward
 * Forwards one HTTP request to a VM over pooled keep-alive HTTP/1.1 connections.
 * It drives undici's dispatcher directly: response chunks are written straight to
 * the client's response with backpressure (pause/resume), with no intermediate
 * stream objects, and request bodies are streamed, never buffered.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2'
import { Agent, type Dispatcher } from 'undici'
import { downstreamHeaders } from './headers.ts'

export type ClientRequest = IncomingMessage | Http2ServerRequest
export type ClientResponse = ServerResponse | Http2ServerResponse

/** Why a forward failed, as counted in `vmfront_upstream_errors_total{reason}`. */
export type UpstreamFailure = 'refused' | 'connect_timeout' | 'timeout' | 'reset' | 'dns' | 'protocol' | 'client_abort'

/** Outcome of a forward, reported once. */
export interface ForwardOutcome {
  status: number
  failure?: UpstreamFailure
  error?: Error
}

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
    onError: (outcome: ForwardOutcome) => void
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

class ForwardHandler implements Dispatcher.DispatchHandler {
  private readonly res: ClientResponse
  private readonly report: (outcome: ForwardOutcome) => void
  private controller: Dispatcher.DispatchController | undefined
  private started = false
  private finished = false

  constructor (res: ClientResponse, onError: (outcome: ForwardOutcome) => void) {
    this.res = res
    this.report = onError
    res.once('close', () => {
      if (!this.finished && this.controller !== undefined && !this.controller.aborted) {
        this.controller.abort(Object.assign(new Error('client went away'), { code: 'VMFRONT_CLIENT_ABORT' }))
      }
    })
  }

  onRequestStart (controller: Dispatcher.DispatchController): void {
    this.controller = controller
  }

  onResponseStart (controller: Dispatcher.DispatchController, statusCode: number, _headers: unknown, statusMessage?: string): void {
    if (statusCode < 200) return
    this.started = true
    const raw = (controller.rawHeaders ?? []) as (Buffer | string)[]
    writeResponseHead(this.res, statusCode, downstreamHeaders(raw), statusMessage)
  }

  onResponseData (controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (!(this.res as ServerResponse).write(chunk)) {
      controller.pause()
      this.res.once('drain', () => { controller.resume() })
    }
  }

  onResponseEnd (): void {
    this.finished = true
    this.res.end()
  }

  onResponseError (_controller: Dispatcher.DispatchController, err: Error & { code?: string }): void {
    this.finished = true
    if (err.code === 'VMFRONT_CLIENT_ABORT' || this.res.destroyed) {
      this.report({ status: 499, failure: 'client_abort', error: err })
      return
    }
    if (this.started) {
      // Headers are gone: all we can do is cut the response so the client sees it failed.
      this.report({ status: this.res.statusCode, failure: classifyUpstreamError(err).failure, error: err })
      this.res.destroy(err)
      return
    }
    const { status, failure } = classifyUpstreamError(err)
    this.report({ status, failure, error: err })
  }
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
  return {
    dispatcher: agent,
    forward (req, res, origin, path, headers, onError): void {
      const te = req.headers['transfer-encoding']
      const cl = req.headers['content-length']
      const hasBody = te !== undefined || (cl !== undefined && cl !== '0')
      const method = req.method ?? 'GET'
      const dispatch = (): void => {
        agent.dispatch({
          origin,
          path,
          method,
          headers,
          body: hasBody ? req : null,
          // A streamed body cannot be replayed: never retry on another connection.
          idempotent: !hasBody && (method === 'GET' || method === 'HEAD' || method === 'OPTIONS')
        }, new ForwardHandler(res, onError))
      }
      if (te === undefined) {
        dispatch()
        return
      }
      // The parser emits the request before it parses the rest of the packet: one
      // turn later, a malformed first chunk has already failed the request (400
      // from the listener), and nothing of it goes to the VM.
      setImmediate(() => {
        if (req.destroyed || res.destroyed || req.socket?.destroyed === true) return
        dispatch()
      })
    },
    async close (): Promise<void> {
      await agent.close()
    }
  }
}
