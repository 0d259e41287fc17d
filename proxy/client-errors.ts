/**
 * @module proxy/client-errors
 * What a listener answers when the client, not a VM, is at fault before any route
 * is involved: HTTP/1.x parse errors and header timeouts (`clientError`), and
 * CONNECT (vmfront is not a forward proxy: 405). Each such request is counted once,
 * under `_unknown`, and never as an upstream error. A well-formed request that was
 * pipelined before the malformed one keeps its place: its response is written in
 * full before the error answer (RFC 9112 §9.3.2).
 */
import type { IncomingMessage } from 'node:http'
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { ErrorPages } from './error-pages.ts'
import type { Logger } from './log.ts'
import { UNKNOWN_DOMAIN, type ProxyMetrics } from './metrics.ts'
import { writeRawResponse } from './raw-response.ts'

/** Methods the proxy forwards to VMs: the Allow header of its 405 to CONNECT. */
export const FORWARDED_METHODS = 'GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH'

/**
 * Set on a request whose body failed to parse (bad chunking): the request handler
 * already saw it and counts it when its response closes, with this status
 * (not 499, and not as an upstream error).
 */
export const CLIENT_ERROR_STATUS = Symbol('vmfront.clientErrorStatus')

/** A failed parser fails again on every later packet: the socket is answered once. */
const ANSWERED = Symbol('vmfront.clientErrorAnswered')

const STATUS_BY_CODE: Readonly<Record<string, number>> = {
  HPE_HEADER_OVERFLOW: 431,
  ERR_HTTP_REQUEST_TIMEOUT: 408,
  HPE_HEADERS_TIMEOUT: 408
}

/** The ServerResponse Node keeps on a socket while a request on it is answered. */
interface PendingResponse {
  readonly headersSent: boolean
  readonly req?: IncomingMessage
  once (event: 'finish' | 'close', listener: () => void): unknown
}

/** A request as the parser holds it. */
type ParsedRequest = IncomingMessage & { [CLIENT_ERROR_STATUS]?: number }

type HttpSocket = Socket & {
  /** The response being written on this socket (the first of any pipelined ones). */
  _httpMessage?: PendingResponse | null
  /** Node's parser; `incoming` is the last request it started (complete or not). */
  parser?: { incoming?: ParsedRequest | null } | null
  [ANSWERED]?: boolean
}

type ParseError = Error & { code?: string, rawPacket?: unknown, bytesParsed?: unknown }

/**
 * 505 when the request line claims another major HTTP version than 1 (RFC 9110
 * §15.6.6), else 400. llhttp reports both as HPE_INVALID_VERSION; the line is read
 * back from the packet, at the position where parsing stopped.
 */
function invalidVersionStatus (err: ParseError): number {
  const raw = err.rawPacket
  if (!Buffer.isBuffer(raw)) return 400
  const at = typeof err.bytesParsed === 'number' ? Math.min(err.bytesParsed, raw.length) : raw.length
  const lineStart = at === 0 ? 0 : raw.lastIndexOf(10, at - 1) + 1
  const lineEnd = raw.indexOf(10, at)
  const line = raw.subarray(lineStart, lineEnd === -1 ? Math.min(raw.length, at + 32) : lineEnd).toString('latin1')
  const version = line.lastIndexOf(' HTTP/')
  if (version === -1) return 400
  const major = line.slice(version + 6, line.indexOf('.', version + 6))
  return /^\d+$/.test(major) && major !== '1' ? 505 : 400
}

function statusOf (err: ParseError): number {
  const mapped = STATUS_BY_CODE[err.code ?? '']
  if (mapped !== undefined) return mapped
  return err.code === 'HPE_INVALID_VERSION' ? invalidVersionStatus(err) : 400
}

/** Runs `then` once no response is in flight on the socket (each pipelined one finished or aborted). */
function afterResponses (socket: HttpSocket, then: () => void): void {
  const pending = socket._httpMessage
  if (pending === undefined || pending === null) {
    then()
    return
  }
  let done = false
  // Node's own 'finish' listener runs first and hands the socket to the next queued response.
  const next = (): void => {
    if (done) return
    done = true
    afterResponses(socket, then)
  }
  pending.once('finish', next)
  pending.once('close', next)
}

/**
 * The listener's `clientError` handler: bad framing (CL+TE, invalid chunking, bad
 * tokens), an unsupported version, oversized headers and slow header delivery end
 * here with a status and a closed connection.
 */
export function createClientErrorHandler (listener: string, metrics: ProxyMetrics, pages: ErrorPages, logger: Logger): (err: ParseError, socket: Duplex) => void {
  return function onClientError (err, duplex): void {
    const socket = duplex as HttpSocket
    if (socket[ANSWERED] === true) return
    socket[ANSWERED] = true
    // A reset, or a TLS handshake that failed or timed out (the HTTPS server reports
    // those here too): no HTTP request was made, there is nothing to answer or count.
    if (err.code === 'ECONNRESET' || err.code === 'EPIPE' || (socket as Socket & { secureConnecting?: boolean }).secureConnecting === true) {
      socket.destroy()
      return
    }
    const status = statusOf(err)
    logger.debug('client error', { listener, code: err.code, status })
    const pending = socket._httpMessage ?? undefined
    const parsing = socket.parser?.incoming ?? undefined
    if (parsing !== undefined && !parsing.complete) {
      // The error is inside the body of a request the handler already has: that
      // request counts itself, with this status, when its response closes. Once the
      // socket is ended, a late upstream answer cannot follow the error on the wire.
      parsing[CLIENT_ERROR_STATUS] = status
      if (pending !== undefined && pending.req === parsing && !pending.headersSent) writeRawResponse(socket, status, pages)
      else socket.destroy()
      return
    }
    metrics.domain(UNKNOWN_DOMAIN).record(status, 'OTHER', 0)
    if (pending === undefined) {
      writeRawResponse(socket, status, pages)
      return
    }
    // Well-formed requests before this one are still being answered: read nothing
    // more, let their responses finish, then answer the malformed one and close.
    socket.pause()
    afterResponses(socket, () => { writeRawResponse(socket, status, pages) })
  }
}

/**
 * The listener's `connect` handler: CONNECT asks for a tunnel, which a reverse
 * proxy does not offer (RFC 9110 §9.3.6): 405 with Allow, counted under `_unknown`.
 * HTTP/1.1 hands over the raw socket; HTTP/2 a request and response.
 */
export function createConnectHandler (metrics: ProxyMetrics, pages: ErrorPages): (req: IncomingMessage | Http2ServerRequest, socket: Duplex | Http2ServerResponse) => void {
  return function onConnect (_req, target): void {
    metrics.domain(UNKNOWN_DOMAIN).record(405, 'CONNECT', 0)
    if ('writeHead' in target) {
      const body = pages.body(405)
      target.writeHead(405, { allow: FORWARDED_METHODS, 'content-type': 'text/html; charset=utf-8', 'content-length': body.length })
      target.end(body)
      return
    }
    target.on('error', () => {})
    writeRawResponse(target, 405, pages, `Allow: ${FORWARDED_METHODS}\r\n`)
  }
}
