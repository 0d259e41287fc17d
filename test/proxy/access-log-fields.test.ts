// SPEC §13: every access-log line carries bytes_in, bytes_out, user_agent, referer,
// scheme, upstream (never sent to the client), upstream_ms and request_id: a real
// proxy process, a real VM, raw HTTP/1.1 bytes and a WebSocket.
import t from 'tap'
import http from 'node:http'
import http2 from 'node:http2'
import net from 'node:net'
import { createChildPool } from '../../proxy/chain/h2-pool.ts'
import { createChainForwarder } from '../../proxy/chain/h2-forward.ts'
import type { RouteEntry } from '../../proxy/router.ts'
import { memoryLogger } from '../chain/chain-helpers.ts'
import { startBackend, rawRequest, webSocketRoundTrip } from '../helpers/backend.ts'
import { startProxyProcess, routesDoc } from '../helpers/proxy-process.ts'

const FIELDS = ['bytes_in', 'bytes_out', 'user_agent', 'referer', 'scheme', 'upstream', 'upstream_ms', 'request_id']

t.test('the access log has the §13 fields, for forwarded, refused and WebSocket requests', async (t) => {
  // The VM answers after 60 ms with a known body, so upstream_ms and bytes_out are checkable.
  const body = 'x'.repeat(1234)
  const vm = await startBackend(t, (req, res) => {
    if (req.url?.startsWith('/slow') === true) {
      req.resume()
      req.on('end', () => { setTimeout(() => { res.writeHead(200, { 'content-type': 'text/plain' }); res.end(body) }, 60) })
      return
    }
    res.writeHead(200, { 'content-length': 2 }); res.end('ok')
  })
  const proxy = await startProxyProcess(t, { routes: routesDoc([{ domain: 'app.test', target: vm.origin }]) })
  const port = proxy.ports.http

  const post = 'hello=world&n=12345'
  const res = await rawRequest(port, `POST /slow?q=1 HTTP/1.1\r\nHost: app.test\r\nUser-Agent: tester/1.0 "quoted"\r\nReferer: https://ref.test/page\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${post.length}\r\nConnection: close\r\n\r\n${post}`)
  t.match(res.data, /^HTTP\/1\.1 200 /)
  t.notMatch(res.data, new RegExp(String(vm.port)), 'the VM address never reaches the client')
  const line = await proxy.waitForLog((l) => l.msg === 'access' && l.path === '/slow?q=1')
  for (const f of FIELDS) t.ok(f in line, `field ${f} present`)
  t.equal(line.bytes_in, post.length, 'bytes_in: the request body')
  t.equal(line.bytes_out, body.length, 'bytes_out: the response body (chunked from the VM)')
  t.equal(line.user_agent, 'tester/1.0 "quoted"')
  t.equal(line.referer, 'https://ref.test/page')
  t.equal(line.scheme, 'http')
  t.equal(line.upstream, vm.origin)
  t.ok(typeof line.upstream_ms === 'number' && line.upstream_ms >= 55 && line.upstream_ms <= (line.duration_ms as number), `upstream_ms ${String(line.upstream_ms)} is the time to the VM's headers`)
  t.match(line.request_id, /^[0-9a-f]{16}-[0-9a-z]+$/, 'a generated request id')
  t.equal(line.request_id, vm.requests.at(-1)?.headers['x-request-id'], 'the VM got the logged request id')

  // Not routed: no upstream, the error page's bytes, still an id.
  await rawRequest(port, 'GET /nowhere HTTP/1.1\r\nHost: unknown.test\r\nConnection: close\r\n\r\n')
  const miss = await proxy.waitForLog((l) => l.msg === 'access' && l.path === '/nowhere')
  t.equal(miss.status, 404)
  t.equal(miss.upstream, null)
  t.equal(miss.upstream_ms, null)
  t.equal(miss.bytes_in, 0)
  t.ok((miss.bytes_out as number) > 0, 'the error page body counts')
  t.equal(miss.user_agent, null)
  t.match(miss.request_id, /^[0-9a-f]{16}-/)

  // WebSocket: the tunnel's bytes, the VM as upstream, the id forwarded.
  const ws = await webSocketRoundTrip(port, 'app.test', 'ping')
  t.match(ws.head, /^HTTP\/1\.1 101 /)
  const wsLine = await proxy.waitForLog((l) => l.msg === 'access' && l.path === '/ws' && l.status === 101)
  t.equal(wsLine.upstream, vm.origin)
  t.ok((wsLine.bytes_in as number) > 0 && (wsLine.bytes_out as number) > 0, 'tunnel bytes counted')
  t.ok(typeof wsLine.upstream_ms === 'number' && wsLine.upstream_ms >= 0 && wsLine.upstream_ms <= (wsLine.duration_ms as number), 'upstream_ms: time to the VM\'s 101')
  t.match(wsLine.request_id, /^[0-9a-f]{16}-/)
})

t.test('a chain child\'s answer reports its time to headers and body bytes, and gets the request id', async (t) => {
  // The child answers after 50 ms with 3000 bytes; the parent side is the real chain forwarder and pool.
  const seen: string[] = []
  const child = http2.createServer((req, res) => {
    seen.push(String(req.headers['x-request-id']))
    setTimeout(() => { res.writeHead(200, { 'content-type': 'text/plain' }); res.end('y'.repeat(3000)) }, 50)
  })
  await new Promise<void>((resolve) => child.listen(0, '127.0.0.1', resolve))
  const sessions = new Set<http2.ServerHttp2Session>()
  child.on('session', (s) => { sessions.add(s) })
  t.teardown(() => new Promise<void>((resolve) => { for (const s of sessions) s.destroy(); child.close(() => { resolve() }) }))
  const url = `http://127.0.0.1:${(child.address() as net.AddressInfo).port}`
  const pool = createChildPool({ child: 'c1', url, logger: memoryLogger().logger, pingIntervalMs: 1000, pingTimeoutMs: 1000, connectTimeoutMs: 1000, idleTimeoutMs: 0, maxConcurrentStreams: 10, onReset: () => {} })
  const forward = createChainForwarder({ pool: () => pool, responseTimeoutMs: 5000, idleTimeoutMs: 5000 })
  const entry = { domain: 'app.test', route: { domain: 'app.test', redirectCode: 302, redirectToHttps: false }, chain: { child: 'c1', url }, profile: 'default' } as RouteEntry
  const stats = { headersAt: 0, bytesOut: 0 }
  let sentAt = 0
  const parent = http.createServer((req, res) => {
    sentAt = performance.now()
    forward(req, res, entry, { clientIp: '203.0.113.7', forwardedFor: '203.0.113.7', proto: 'http', forwardedHost: 'app.test', requestId: 'parent-id-1' }, () => { res.destroy() }, stats)
  })
  await new Promise<void>((resolve) => parent.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => { pool.close(true); parent.closeAllConnections(); parent.close(() => { resolve() }) }))
  const res = await rawRequest((parent.address() as net.AddressInfo).port, 'GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n')
  t.match(res.data, /^HTTP\/1\.1 200 /)
  t.equal(stats.bytesOut, 3000, 'body bytes counted')
  t.ok(stats.headersAt - sentAt >= 45, `time to the child's headers (${(stats.headersAt - sentAt).toFixed(1)} ms)`)
  t.same(seen, ['parent-id-1'], 'the child got the request id')
})
