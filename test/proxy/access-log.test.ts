// The hand-built access-log line is valid JSON whatever the client sends.
import t from 'tap'
import { createAccessLog } from '../../proxy/access-log.ts'
import type { ClientRequest } from '../../proxy/http-types.ts'

const entry = (req: ClientRequest, domain: string, client: string) => ({ req, domain, client, requestId: 'r-1', upstream: '', forwardedAt: 0, headersAt: 0, bytesOut: 0, bytesIn: -1 })

t.test('access-log lines are valid JSON with escaped client strings', async (t) => {
  const lines: string[] = []
  const log = createAccessLog({ write: (l) => lines.push(l), flush: () => {} })
  const req = { method: 'GET', url: '/a"b\\c\u0001\u00e9?q=<x>', httpVersion: '1.1', headers: { host: 'h"ost' } } as unknown as ClientRequest
  log.write(entry(req, 'app.test', '203.0.113.1'), 200, 0.0123456, 'http', undefined)
  log.write(entry({ ...req, headers: {} } as unknown as ClientRequest, '_unknown', '::1'), 502, 1, 'http', 'refused')
  const [a, b] = lines.map((l) => JSON.parse(l) as Record<string, unknown>)
  t.equal(a.path, '/a"b\\c\u0001\u00e9?q=<x>')
  t.equal(a.host, 'h"ost')
  t.equal(a.status, 200)
  t.equal(a.duration_ms, 12.346)
  t.equal(a.msg, 'access')
  t.ok(!Number.isNaN(Date.parse(a.time as string)))
  t.equal(b.host, null)
  t.equal(b.upstream_error, 'refused')
})
