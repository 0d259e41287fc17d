/**
 * @module proxy/access-log
 * One JSON line per request (opt-out with `log.access = false`). Built by hand
 * rather than with JSON.stringify of an object: it runs once per request, and
 * only the client-controlled strings need escaping.
 */
import type { UpstreamFailure, ClientRequest } from './forward.ts'
import type { LineSink } from './line-sink.ts'

export interface AccessLog {
  write (req: ClientRequest, status: number, seconds: number, domain: string, client: string, failure: UpstreamFailure | undefined): void
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

export function createAccessLog (sink: LineSink): AccessLog {
  // toISOString is costly at tens of thousands of requests per second: reuse it within a millisecond.
  let lastMs = 0
  let lastIso = ''
  return {
    write (req, status, seconds, domain, client, failure): void {
      const now = Date.now()
      if (now !== lastMs) {
        lastMs = now
        lastIso = new Date(now).toISOString()
      }
      const host = req.headers.host ?? (req.headers[':authority'] as string | undefined)
      sink.write(`{"time":"${lastIso}","level":"info","msg":"access","client":${quote(client)},"method":${quote(req.method)},"host":${quote(host)},"path":${quote(req.url)},"proto":${quote(req.httpVersion)},"status":${status},"duration_ms":${Math.round(seconds * 1e6) / 1e3},"domain":${quote(domain)}${failure === undefined ? '' : `,"upstream_error":"${failure}"`}}`)
    }
  }
}
