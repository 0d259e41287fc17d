/**
 * @module proxy/chain/h2-forward
 * Forwards one request for a chained domain to its child over the pooled HTTP/2
 * sessions: the client's headers (Host as :authority, our X-Forwarded-*; the
 * session itself is the parent's credential, see auth.ts, so no header carries
 * one), the body streamed with backpressure both ways, and every failure
 * reported once through `onError` (502 when the child cannot be reached or resets
 * the stream, 504 when it does not answer in time). A stream the child refused
 * before processing it (REFUSED_STREAM, or a session already going away) is
 * retried once on another session when no body byte was sent. Requests in the
 * chain's reserved path space (/.well-known/vmfront-chain/) are not forwarded:
 * the child answers that space itself, for its parent only.
 */
import http2 from 'node:http2'
import type { ServerResponse } from 'node:http'
import type { ClientInfo, ClientRequest, ClientResponse, ForwardOutcome, UpstreamFailure } from '../http-types.ts'
import { classifyUpstreamError, writeResponseHead } from '../forward.ts'
import { downstreamHeaders, upstreamHeaders } from '../headers.ts'
import type { ChainForwardFn } from './types.ts'
import type { RouteEntry } from '../router.ts'
import { ChainError } from './errors.ts'
import type { ChildPool } from './h2-pool.ts'
import type { ChildSession } from './h2-session.ts'
import { isChainControlPath } from './parent-trust.ts'

const { NGHTTP2_CANCEL, NGHTTP2_REFUSED_STREAM } = http2.constants
/** Attempts per request: the first, and one retry of a refused stream. */
const MAX_ATTEMPTS = 2

export interface ChainForwarderOptions {
  /** The pool of a registered child, or undefined when it is gone. */
  pool: (child: string) => ChildPool | undefined
  /** Time to the child's response headers (504 when exceeded). */
  responseTimeoutMs: number
  /** Longest silence inside a response body (0 = none). */
  idleTimeoutMs: number
}

/** Maps a chain failure to a status and a failure reason for the metrics. */
export function classifyChainError (err: Error & { code?: string }): { status: number, failure: UpstreamFailure } {
  switch (err.code) {
    case 'CHAIN_PING_TIMEOUT':
      return { status: 504, failure: 'timeout' }
    case 'CHAIN_CONNECT_TIMEOUT':
      return { status: 502, failure: 'connect_timeout' }
    case 'CHAIN_CHILD_DOWN': {
      // Refused at once while the child is down: always 502, with the cause's reason.
      const cause = err.cause as (Error & { code?: string }) | undefined
      return { status: 502, failure: cause === undefined ? 'refused' : classifyChainError(cause).failure }
    }
    case 'ERR_HTTP2_STREAM_CANCEL':
      // A stream still pending when its session failed: the session's error says why.
      return err.cause instanceof Error ? classifyChainError(err.cause) : { status: 502, failure: 'reset' }
    case 'CHAIN_SESSION_CLOSED':
    case 'ERR_HTTP2_STREAM_ERROR':
    case 'ERR_HTTP2_SESSION_ERROR':
    case 'ERR_HTTP2_GOAWAY_SESSION':
    case 'ERR_HTTP2_INVALID_SESSION':
      return { status: 502, failure: 'reset' }
    case 'ERR_HTTP2_ERROR':
    case 'ERR_HTTP2_INVALID_HEADER_VALUE':
    case 'ERR_HTTP2_INVALID_CONNECTION_HEADERS':
      return { status: 502, failure: 'protocol' }
    default:
      return classifyUpstreamError(err)
  }
}

/** Builds the HTTP/2 request headers: pseudo-headers first, Host as :authority. */
function requestHeaders (req: ClientRequest, client: ClientInfo, entry: RouteEntry, scheme: string): http2.OutgoingHttpHeaders {
  const flat = upstreamHeaders(req.rawHeaders, client, req.headers.connection as string | undefined)
  const out: http2.OutgoingHttpHeaders = {
    ':method': req.method ?? 'GET',
    ':path': req.url ?? '/',
    ':scheme': scheme,
    ':authority': (req.headers.host ?? req.headers[':authority'] ?? entry.domain) as string
  }
  for (let i = 0; i < flat.length; i += 2) {
    const name = flat[i].toLowerCase()
    if (name === 'host') continue
    const prev = out[name]
    if (prev === undefined) out[name] = flat[i + 1]
    else if (Array.isArray(prev)) prev.push(flat[i + 1])
    else out[name] = [String(prev), flat[i + 1]]
  }
  return out
}

/** Flattens an HTTP/2 header object (minus pseudo-headers) into name/value pairs. */
function flatResponseHeaders (headers: http2.IncomingHttpHeaders): string[] {
  const flat: string[] = []
  for (const name of Object.keys(headers)) {
    if (name.charCodeAt(0) === 58 /* : */) continue
    const value = headers[name]
    if (value === undefined) continue
    if (Array.isArray(value)) for (const v of value) flat.push(name, v)
    else flat.push(name, String(value))
  }
  return flat
}

/** Creates the parent's ChainForwardFn. */
export function createChainForwarder (options: ChainForwarderOptions): ChainForwardFn {
  return function forwardToChild (req, res, entry, client, onError, stats): void {
    const target = entry.chain
    const pool = target === undefined ? undefined : options.pool(target.child)
    if (target === undefined || pool === undefined) {
      onError({ status: 502, failure: 'refused', error: new ChainError('CHAIN_CHILD_DOWN', `no registered child for ${entry.domain}`) })
      return
    }
    if (isChainControlPath(req.url)) {
      // Never the child's control space on the parent's own session.
      writeResponseHead(res, 404, ['content-type', 'text/plain; charset=utf-8', 'content-length', '10', 'cache-control', 'no-store'])
      res.end('not found\n')
      return
    }
    const te = req.headers['transfer-encoding']
    const cl = req.headers['content-length']
    const hasBody = te !== undefined || (cl !== undefined && cl !== '0')
    const headers = requestHeaders(req, client, entry, target.url.startsWith('https:') ? 'https' : 'http')
    let settled = false
    let clientGone = false
    let current: http2.ClientHttp2Stream | undefined

    const report = (outcome: ForwardOutcome): void => {
      if (settled) return
      settled = true
      onError(outcome)
    }
    res.once('close', () => {
      if (settled) return
      if (current !== undefined && !current.closed) {
        clientGone = true
        current.close(NGHTTP2_CANCEL)
      }
      report({ status: 499, failure: 'client_abort' })
    })

    function attempt (n: number): void {
      const picked = pool!.acquire()
      if (picked instanceof ChainError) {
        report({ ...classifyChainError(picked), error: picked })
        return
      }
      // A new session proves itself first: nothing goes out on it before that.
      picked.whenReady((err) => {
        if (settled) return
        if (err === undefined) {
          send(picked, n)
          return
        }
        if ((err as { code?: string }).code === 'CHAIN_SESSION_CLOSED' && n + 1 < MAX_ATTEMPTS) {
          attempt(n + 1)
          return
        }
        report({ ...classifyChainError(err), error: err })
      })
    }

    function send (picked: ChildSession, n: number): void {
      let stream: http2.ClientHttp2Stream
      try {
        stream = picked.request(headers, { endStream: !hasBody })
      } catch (err) {
        // The session started going away between acquire() and request().
        pool!.retire(picked)
        if (n + 1 < MAX_ATTEMPTS) { attempt(n + 1); return }
        report({ ...classifyChainError(err as Error), error: err as Error })
        return
      }
      run(stream, picked, n)
    }

    function run (stream: http2.ClientHttp2Stream, session: ChildSession, n: number): void {
      current = stream
      let started = false
      let bodySent = false
      let finished = false
      const headersTimer = setTimeout(() => {
        if (started) return
        stream.close(NGHTTP2_CANCEL)
        report({ status: 504, failure: 'timeout', error: new ChainError('CHAIN_CHILD_DOWN', `no response headers from child "${entry.chain!.child}" within ${options.responseTimeoutMs} ms`) })
      }, options.responseTimeoutMs)

      if (hasBody) {
        req.once('data', () => { bodySent = true })
        req.pipe(stream)
        req.once('error', () => { if (!stream.closed) stream.close(NGHTTP2_CANCEL) })
      }

      stream.on('response', (h2headers) => {
        clearTimeout(headersTimer)
        if (settled || res.destroyed) return
        started = true
        if (stats !== undefined) stats.headersAt = performance.now()
        const status = Number(h2headers[':status'])
        writeResponseHead(res, status, downstreamHeaders(flatResponseHeaders(h2headers)))
        if (options.idleTimeoutMs > 0) {
          stream.setTimeout(options.idleTimeoutMs, () => {
            stream.close(NGHTTP2_CANCEL)
            report({ status, failure: 'timeout', error: new ChainError('CHAIN_CHILD_DOWN', 'response body idle for too long') })
            res.destroy()
          })
        }
      })
      stream.on('data', (chunk: Buffer) => {
        if (stats !== undefined) stats.bytesOut += chunk.length
        if (!(res as ServerResponse).write(chunk)) {
          stream.pause()
          res.once('drain', () => { stream.resume() })
        }
      })
      stream.once('end', () => {
        finished = true
        if (started && !settled) {
          settled = true
          res.end()
        }
      })
      stream.on('error', () => { /* handled on 'close', with the stream's rstCode */ })
      stream.once('close', () => {
        clearTimeout(headersTimer)
        if (settled || finished || clientGone) return
        const err = (stream as http2.ClientHttp2Stream & { errored?: Error | null }).errored ?? undefined
        const refused = stream.rstCode === NGHTTP2_REFUSED_STREAM
        if (!started && refused && !bodySent && n + 1 < MAX_ATTEMPTS) {
          pool!.retire(session)
          attempt(n + 1)
          return
        }
        const failureError = err ?? new ChainError('CHAIN_SESSION_CLOSED', `stream closed by the child (code ${stream.rstCode})`)
        if (started) {
          // Headers are gone: all we can do is cut the response so the client sees it failed.
          report({ status: res.statusCode, failure: classifyChainError(failureError).failure, error: failureError })
          res.destroy(failureError)
          return
        }
        report({ ...classifyChainError(failureError), error: failureError })
      })
    }

    attempt(0)
  }
}
