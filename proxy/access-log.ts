/**
 * @module proxy/access-log
 * One JSON line per request (opt-out with `log.access = false`). Built by hand
 * rather than with JSON.stringify of an object: it runs once per request, and
 * only the client-controlled strings need escaping.
 *
 * Fields (README "Access log"): time, level, msg, client, method, host, path,
 * proto, scheme, status, duration_ms, domain, bytes_in, bytes_out, user_agent,
 * referer, upstream, upstream_ms, request_id, upstream_error when a forward
 * failed, and worker when several workers serve. `upstream` names the VM or chain child: it is written here only, never
 * sent to a client.
 */
import type { UpstreamFailure, ClientRequest, ForwardStats } from './http-types.ts'
import type { LineSink } from './line-sink.ts'

/** What the handler knows about a request when it ends (its `ActiveRequest`). */
export interface AccessEntry extends ForwardStats {
  readonly req: ClientRequest
  domain: string
  client: string
  /** The X-Request-Id sent to the upstream ('' when the request went nowhere). */
  requestId: string
  /** The origin of the VM or the URL of the chain child ('' when none was chosen). */
  upstream: string
  /** performance.now() when the request went to its upstream (0: it did not). */
  forwardedAt: number
  /** Bytes of the request body, or -1: derived from the request's headers. */
  bytesIn: number
}

export interface AccessLog {
  write (entry: AccessEntry, status: number, seconds: number, scheme: string, failure: UpstreamFailure | undefined): void
}

/** A JSON string literal; the common case (printable ASCII, no quote or backslash) skips JSON.stringify. */
function quote (value: string | undefined): string {
  if (value === undefined) return 'null'
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i)
    if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x5c) return JSON.stringify(value)
  }
  return `"${value}"`
}

/**
 * The request body's size from its headers: its Content-Length (the parser holds
 * the body to it), 0 without a body, null for a body streamed without a length
 * (chunked HTTP/1.1, HTTP/2 DATA frames without content-length), which is not counted.
 */
function declaredBodyBytes (req: ClientRequest): string {
  const cl = req.headers['content-length']
  if (cl !== undefined) return /^\d{1,15}$/.test(cl) ? String(Number(cl)) : 'null'
  if (req.headers['transfer-encoding'] !== undefined) return 'null'
  if ('stream' in req && !req.stream.endAfterHeaders) return 'null'
  return '0'
}

/** `worker`: the slot of the worker writing (SPEC §12), added to each line as `"worker"`. */
export function createAccessLog (sink: LineSink, worker?: number): AccessLog {
  const tail = worker === undefined ? '}' : `,"worker":${worker}}`
  // toISOString is costly at tens of thousands of requests per second: reuse it within a millisecond.
  let lastMs = 0
  let lastIso = ''
  return {
    write (entry, status, seconds, scheme, failure): void {
      const now = Date.now()
      if (now !== lastMs) {
        lastMs = now
        lastIso = new Date(now).toISOString()
      }
      const req = entry.req
      const headers = req.headers
      const host = headers.host ?? (headers[':authority'] as string | undefined)
      const upstreamMs = entry.headersAt > 0 && entry.forwardedAt > 0 ? String(Math.round((entry.headersAt - entry.forwardedAt) * 1e3) / 1e3) : 'null'
      sink.write(`{"time":"${lastIso}","level":"info","msg":"access","client":${quote(entry.client)},"method":${quote(req.method)},"host":${quote(host)},"path":${quote(req.url)},"proto":${quote(req.httpVersion)},"scheme":"${scheme}","status":${status},"duration_ms":${Math.round(seconds * 1e6) / 1e3},"domain":${quote(entry.domain)},"bytes_in":${entry.bytesIn >= 0 ? entry.bytesIn : declaredBodyBytes(req)},"bytes_out":${entry.bytesOut},"user_agent":${quote(headers['user-agent'])},"referer":${quote(headers.referer)},"upstream":${entry.upstream === '' ? 'null' : quote(entry.upstream)},"upstream_ms":${upstreamMs},"request_id":${entry.requestId === '' ? 'null' : quote(entry.requestId)}${failure === undefined ? '' : `,"upstream_error":"${failure}"`}${tail}`)
    }
  }
}
