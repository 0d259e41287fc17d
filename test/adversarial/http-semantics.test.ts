// What a hostile or sloppy HTTP/1.1 client can make the VM see, or make the dashboards
// blame on the VM: absolute-form targets, Connection tokens naming Host, duplicate Host,
// OPTIONS *, CONNECT, foreign HTTP versions, pipelining into a malformed request, and a
// malformed chunked body. Raw bytes over node:net against a real proxy process.
import t from 'tap'
import net from 'node:net'
import http2 from 'node:http2'
import { startProxyProcess, routesDoc, metricValue } from '../helpers/proxy-process.ts'
import { clientMistakeFlood } from './http-semantics-attacks.ts'
import { startBackend, rawRequest } from '../helpers/backend.ts'
import { pollUntil } from '../helpers/pebble.ts'
import { openUpgrade, upgradeRequest } from '../helpers/websocket-client.ts'

/** Every `vmfront_http_requests_total` and `vmfront_upstream_errors_total` sample, by series. */
function samples (text: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (!line.startsWith('vmfront_http_requests_total{') && !line.startsWith('vmfront_upstream_errors_total{')) continue
    const space = line.lastIndexOf(' ')
    out.set(line.slice(0, space), Number(line.slice(space + 1)))
  }
  return out
}

/** The series whose value changed between two scrapes, with the change. */
function delta (before: Map<string, number>, after: Map<string, number>): Record<string, number> {
  const out: Record<string, number> = {}
  for (const [series, value] of after) {
    const d = value - (before.get(series) ?? 0)
    if (d !== 0) out[series] = d
  }
  return out
}

function body (response: string): string {
  return response.slice(response.indexOf('\r\n\r\n') + 4)
}

t.test('HTTP semantics at the edge', async (t) => {
  const app = await startBackend(t)
  const other = await startBackend(t)
  const slow = await startBackend(t, (req, res) => {
    // Answers after a pause, in two chunks: the response is still in flight when the next bytes arrive.
    setTimeout(() => { res.write('first half, '); setTimeout(() => { res.end('second half') }, 50) }, 150)
  })
  const upgradeHosts: string[] = []
  other.server.prependListener('upgrade', (req) => { upgradeHosts.push(String(req.headers.host)) })
  const proxy = await startProxyProcess(t, {
    routes: routesDoc([
      { domain: 'app.test', target: app.origin },
      { domain: 'other.test', target: other.origin },
      { domain: 'slow.test', target: slow.origin }
    ]),
    listen: '[listen]\nhttp = "127.0.0.1:0"\nhttps = "127.0.0.1:0"\nadmin = "127.0.0.1:0"'
  })
  const port = proxy.ports.http
  const warnings = (): number => proxy.logs.filter((l) => l.level === 'warn').length

  await t.test('8: an absolute-form target reaches its own VM with its authority as Host (RFC 9112 §3.2.2)', async (t) => {
    const before = app.requests.length
    const res = await rawRequest(port, 'GET http://other.test/x?y=1 HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n')
    t.match(res.data, /^HTTP\/1.1 200 /)
    const seen = JSON.parse(body(res.data)) as { url: string, headers: Record<string, string> }
    t.equal(seen.url, '/x?y=1', 'origin-form path')
    t.equal(seen.headers.host, 'other.test', 'Host replaced by the target authority')
    t.equal(seen.headers['x-forwarded-host'], 'other.test')
    t.equal(app.requests.length, before, 'the Host header\'s VM saw nothing')

    const withPort = await rawRequest(port, 'GET HTTP://Other.Test:8080 HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n')
    const seenPort = JSON.parse(body(withPort.data)) as { url: string, headers: Record<string, string> }
    t.equal(seenPort.headers.host, 'Other.Test:8080', 'the authority as written, port included')
    t.equal(seenPort.url, '/', 'an empty path becomes /')

    for (const target of ['http://user@other.test/', 'ftp://other.test/', 'http:///x']) {
      const bad = await rawRequest(port, `GET ${target} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n`)
      t.match(bad.data, /^HTTP\/1.1 400 /, `${target}: 400`)
    }
  })

  await t.test('8: a WebSocket upgrade with an absolute-form target routes by its authority', async (t) => {
    const ws = await openUpgrade(port, upgradeRequest('app.test', 'http://other.test/ws'))
    t.equal(ws.status, 101, 'switched')
    await ws.close()
    t.same(upgradeHosts, ['other.test'], 'other.test\'s VM got the upgrade, with Host other.test')
  })

  await t.test('9: Connection tokens never remove Host or the forwarding headers', async (t) => {
    const res = await rawRequest(port, 'GET /c HTTP/1.1\r\nHost: app.test\r\nX-Hop: 1\r\nConnection: close, host, x-forwarded-for, x-real-ip, x-forwarded-proto, x-forwarded-host, x-hop\r\n\r\n')
    t.match(res.data, /^HTTP\/1.1 200 /)
    const h = (JSON.parse(body(res.data)) as { headers: Record<string, string> }).headers
    t.equal(h.host, 'app.test', 'Host kept (not replaced by the VM\'s own address)')
    t.equal(h['x-forwarded-for'], '127.0.0.1')
    t.equal(h['x-real-ip'], '127.0.0.1')
    t.equal(h['x-forwarded-proto'], 'http')
    t.equal(h['x-forwarded-host'], 'app.test')
    t.equal(h['x-hop'], undefined, 'a header the client named as hop-by-hop is still dropped')
  })

  await t.test('10: client mistakes are 400/405/505 under _unknown, never upstream errors', async (t) => {
    const cases: Array<[string, string, RegExp, string]> = [
      ['duplicate Host', 'GET / HTTP/1.1\r\nHost: app.test\r\nHost: other.test\r\n\r\n', /^HTTP\/1.1 400 /, 'vmfront_http_requests_total{domain="_unknown",code="400",method="GET"}'],
      ['OPTIONS *', 'OPTIONS * HTTP/1.1\r\nHost: app.test\r\n\r\n', /^HTTP\/1.1 400 /, 'vmfront_http_requests_total{domain="_unknown",code="400",method="OPTIONS"}'],
      ['CONNECT', 'CONNECT app.test:443 HTTP/1.1\r\nHost: app.test:443\r\n\r\n', /^HTTP\/1.1 405 [^]*\r\nAllow: GET, HEAD, POST/, 'vmfront_http_requests_total{domain="_unknown",code="405",method="CONNECT"}'],
      ['HTTP/2.0 request line', 'GET / HTTP/2.0\r\nHost: app.test\r\n\r\n', /^HTTP\/1.1 505 /, 'vmfront_http_requests_total{domain="_unknown",code="505",method="GET"}'],
      ['HTTP/3.0 request line', 'GET / HTTP/3.0\r\nHost: app.test\r\n\r\n', /^HTTP\/1.1 505 /, 'vmfront_http_requests_total{domain="_unknown",code="505",method="OTHER"}'],
      ['HTTP/0.9 with headers', 'GET / HTTP/0.9\r\nHost: app.test\r\n\r\n', /^HTTP\/1.1 505 /, 'vmfront_http_requests_total{domain="_unknown",code="505",method="GET"}'],
      ['HTTP/1.2 (not a version llhttp knows)', 'GET / HTTP/1.2\r\nHost: app.test\r\n\r\n', /^HTTP\/1.1 400 /, 'vmfront_http_requests_total{domain="_unknown",code="400",method="OTHER"}']
    ]
    for (const [name, text, answer, series] of cases) {
      const reached = app.requests.length + other.requests.length
      const warned = warnings()
      const before = samples(await proxy.metrics())
      const res = await rawRequest(port, text)
      t.match(res.data, answer, `${name}: answered`)
      t.ok(res.closed, `${name}: connection closed`)
      t.equal(app.requests.length + other.requests.length, reached, `${name}: no VM saw it`)
      t.same(delta(before, samples(await proxy.metrics())), { [series]: 1 }, `${name}: counted once, under _unknown, no upstream error`)
      t.equal(warnings(), warned, `${name}: no warning`)
    }
  })

  await t.test('10: CONNECT over HTTP/2 gets 405 with Allow too, counted once', async (t) => {
    const before = samples(await proxy.metrics())
    const session = http2.connect(`https://127.0.0.1:${proxy.ports.https}`, { servername: 'app.test', rejectUnauthorized: false })
    t.teardown(() => { session.close() })
    const stream = session.request({ ':method': 'CONNECT', ':authority': 'app.test:443' })
    const headers = await new Promise<http2.IncomingHttpHeaders>((resolve) => { stream.once('response', resolve) })
    stream.resume()
    t.equal(headers[':status'], 405)
    t.match(headers.allow, /^GET, HEAD, POST/)
    t.same(delta(before, samples(await proxy.metrics())), { 'vmfront_http_requests_total{domain="_unknown",code="405",method="CONNECT"}': 1 })
  })

  await t.test('10: a pipelined request gets its whole response before the 400 of the malformed one after it', async (t) => {
    const before = samples(await proxy.metrics())
    const res = await rawRequest(port, 'GET /1 HTTP/1.1\r\nHost: slow.test\r\n\r\nGET /2 HTTP/1.1\r\nHost: slow.test\r\nX-Folded: a\r\n b\r\n\r\n')
    t.match(res.data, /^HTTP\/1.1 200 /, 'the valid request is answered first')
    const second = res.data.indexOf('HTTP/1.1 400 ')
    t.ok(second > 0, 'then the malformed one gets 400')
    t.match(res.data.slice(0, second), /first half, \r\n[^]*second half\r\n0\r\n\r\n$/, 'the first (chunked) response is complete before the 400')
    t.ok(res.closed, 'and the connection closes')
    t.equal(slow.requests.length, 1, 'only the valid request reached the VM')
    t.same(delta(before, samples(await proxy.metrics())), {
      'vmfront_http_requests_total{domain="slow.test",code="200",method="GET"}': 1,
      'vmfront_http_requests_total{domain="_unknown",code="400",method="OTHER"}': 1
    }, 'each counted once (no 499 for the valid one)')
  })

  await t.test('10: a malformed chunked body is counted once, as 400, with no upstream error', async (t) => {
    const before = samples(await proxy.metrics())
    const reached = app.requests.length
    const socket = net.connect(port, '127.0.0.1')
    let data = ''
    socket.setEncoding('latin1')
    socket.on('data', (c: string) => { data += c })
    const closed = new Promise<void>((resolve) => { socket.once('close', () => { resolve() }) })
    socket.write('POST /upload HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n')
    // The next chunk arrives once the request is in flight to the VM, and is garbage.
    await pollUntil(() => app.requests.length > reached, 5000, 'the request to reach the VM')
    socket.write('zz\r\nabc\r\n0\r\n\r\n')
    await closed
    t.match(data, /^HTTP\/1.1 400 /)
    const changes = delta(before, samples(await proxy.metrics()))
    t.same(Object.values(changes), [1], `one sample changed, by one: ${JSON.stringify(changes)}`)
    t.match(Object.keys(changes)[0], /code="400"/, 'as a 400')
  })

  await t.test('10: a bounded flood of every mistake: right answers, nothing to the VM, nothing left open', async (t) => {
    const before = samples(await proxy.metrics())
    const reached = app.requests.length
    const stats = await clientMistakeFlood({ port, host: 'app.test', rounds: 10, concurrency: 10 })
    t.same(stats.unexpected, {}, `every answer as expected (${stats.sent} connections in ${stats.ms} ms) ${JSON.stringify(stats.examples)}`)
    t.equal(app.requests.length - reached, stats.validRequests, 'only the valid pipelined requests reached the VM')
    const changes = delta(before, samples(await proxy.metrics()))
    t.same(Object.keys(changes).filter((k) => k.startsWith('vmfront_upstream_errors_total')), [], 'no upstream error')
    let left: Array<number | undefined> = []
    await pollUntil(async () => {
      const m = await proxy.metrics()
      left = [metricValue(m, 'vmfront_open_connections'), metricValue(m, 'vmfront_http_requests_in_flight')]
      return left[0] === 0 && left[1] === 0
    }, 5000, 'client connections and in-flight requests back to none').catch(() => {})
    t.same(left, [0, 0], 'no client connection or in-flight request left (measured: open connections, in flight)')
  })
})
