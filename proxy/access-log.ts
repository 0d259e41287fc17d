/**
 * @module proxy/access-log
 * One JSON line per request (opt-out with `log.access = false`).
 */
import type { UpstreamFailure, ClientRequest } from './forward.ts'
import type { LineSink } from './line-sink.ts'

export interface AccessLog {
  write (req: ClientRequest, status: number, seconds: number, domain: string, client: string, failure: UpstreamFailure | undefined): void
}

export function createAccessLog (sink: LineSink): AccessLog {
  return {
    write (req, status, seconds, domain, client, failure): void {
      sink.write(JSON.stringify({
        time: new Date().toISOString(),
        level: 'info',
        msg: 'access',
        client,
        method: req.method,
        host: req.headers.host ?? req.headers[':authority'],
        path: req.url,
        proto: req.httpVersion,
        status,
        duration_ms: Math.round(seconds * 1e6) / 1e3,
        domain,
        ...(failure === undefined ? {} : { upstream_error: failure })
      }))
    }
  }
}
