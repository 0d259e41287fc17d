// SPEC §13: every access-log line carries bytes_in, bytes_out, user_agent, referer,
// scheme, upstream (never sent to the client), upstream_ms and request_id: a real
// proxy process, a real VM, raw HTTP/1.1 bytes and a WebSocket.
import t from 'tap'
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
  t.match(wsLine.request_id, /^[0-9a-f]{16}-/)
})
