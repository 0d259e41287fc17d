// The parent's HTTP/2 forwarding in one process: headers, streaming, and the keepalive
// that heals (a frozen link is torn down, requests fail fast, traffic resumes).
import t from 'tap'
import http from 'node:http'
import http2 from 'node:http2'
import net from 'node:net'
import { request } from 'undici'
import { createChildPool, type ChildPool } from '../../proxy/chain/h2-pool.ts'
import { createChainForwarder } from '../../proxy/chain/h2-forward.ts'
import type { RouteEntry } from '../../proxy/router.ts'
import { deadPort } from '../helpers/backend.ts'
import { memoryLogger, startRelay, until } from './chain-helpers.ts'

type Teardown = { teardown (fn: () => unknown): void }

/** The child: an h2c server answering by path. */
async function startH2Child (t: Teardown) {
  const seen: Array<{ path: string, headers: http2.IncomingHttpHeaders }> = []
  const aborted: string[] = []
  const server = http2.createServer((req, res) => {
    seen.push({ path: req.url, headers: req.headers })
    req.stream.on('close', () => { if (req.stream.rstCode === http2.constants.NGHTTP2_CANCEL) aborted.push(req.url) })
    if (req.url === '/slow') { setTimeout(() => { res.end('late') }, 3000).unref(); return }
    if (req.url === '/never') return
    if (req.url === '/stream') {
      res.writeHead(200, { 'content-type': 'text/plain', 'x-custom': 'yes' })
      let n = 0
      const tick = setInterval(() => { res.write(`chunk${n}\n`); if (++n === 5) { clearInterval(tick); res.end() } }, 10)
      return
    }
    let bytes = 0
    req.on('data', (c: Buffer) => { bytes += c.length })
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json', 'set-cookie': ['a=1', 'b=2'] })
      res.end(JSON.stringify({ bytes, method: req.method }))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const sessions = new Set<http2.ServerHttp2Session>()
  server.on('session', (s) => { sessions.add(s); s.on('close', () => sessions.delete(s)) })
  t.teardown(() => new Promise<void>((resolve) => { for (const s of sessions) s.destroy(); server.close(() => { resolve() }) }))
  return { port: (server.address() as net.AddressInfo).port, seen, aborted, sessions }
}

/** The parent: an HTTP/1.1 server whose only route forwards to the pool. */
async function startParentSide (t: Teardown, childPort: number, tune: Partial<{ pingIntervalMs: number, pingTimeoutMs: number, connectTimeoutMs: number, idleTimeoutMs: number, responseTimeoutMs: number }> = {}) {
  const { logger, lines } = memoryLogger()
  let resets = 0
  const pool: ChildPool = createChildPool({
    child: 'c1',
    url: `http://127.0.0.1:${childPort}`,
    logger,
    pingIntervalMs: tune.pingIntervalMs ?? 100,
    pingTimeoutMs: tune.pingTimeoutMs ?? 200,
    connectTimeoutMs: tune.connectTimeoutMs ?? 400,
    idleTimeoutMs: tune.idleTimeoutMs ?? 0,
    maxConcurrentStreams: 100,
    onReset: () => { resets++ }
  })
  const forward = createChainForwarder({ pool: () => pool, responseTimeoutMs: tune.responseTimeoutMs ?? 10_000, idleTimeoutMs: 10_000 })
  const entry = { domain: 'app.example.com', route: { domain: 'app.example.com', redirectCode: 302, redirectToHttps: false }, chain: { child: 'c1', url: `http://127.0.0.1:${childPort}` }, profile: 'default' } as RouteEntry
  const server = http.createServer((req, res) => {
    forward(req, res, entry, { clientIp: '203.0.113.7', forwardedFor: '203.0.113.7', proto: 'https', forwardedHost: 'app.example.com', requestId: 'test-request-id' }, (outcome) => {
      if (outcome.failure === 'client_abort') return
      if (res.headersSent) { res.destroy(); return }
      res.writeHead(outcome.status, { 'x-failure': outcome.failure ?? '' })
      res.end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => { pool.close(true); server.closeAllConnections(); server.close(() => { resolve() }) }))
  const port = (server.address() as net.AddressInfo).port
  const call = async (path: string, options: { method?: string, body?: Buffer, timeoutMs?: number, signal?: AbortSignal } = {}) => {
    const start = performance.now()
    const res = await request(`http://127.0.0.1:${port}${path}`, { method: options.method ?? 'GET', body: options.body, headers: { host: 'app.example.com', 'x-keep': 'k' }, headersTimeout: options.timeoutMs ?? 8000, bodyTimeout: options.timeoutMs ?? 8000, signal: options.signal })
    const text = await res.body.text()
    return { status: res.statusCode, headers: res.headers, text, ms: performance.now() - start }
  }
  return { pool, call, lines, resets: () => resets }
}

t.test('a request reaches the child over HTTP/2 with the chain headers; the answer streams back', async (t) => {
  const child = await startH2Child(t)
  const parent = await startParentSide(t, child.port)
  const res = await parent.call('/echo?q=1', { method: 'POST', body: Buffer.alloc(200_000, 7) })
  t.equal(res.status, 200)
  t.same(JSON.parse(res.text), { bytes: 200_000, method: 'POST' })
  t.same(res.headers['set-cookie'], ['a=1', 'b=2'], 'repeated response headers survive')
  const h = child.seen[0].headers
  t.equal(child.seen[0].path, '/echo?q=1')
  t.equal(h[':authority'], 'app.example.com', 'Host becomes :authority')
  t.equal(h['x-vmfront-chain'], undefined, 'no credential in a header: the session is the credential')
  t.equal(h['x-forwarded-for'], '203.0.113.7')
  t.equal(h['x-real-ip'], '203.0.113.7')
  t.equal(h['x-forwarded-proto'], 'https')
  t.equal(h['x-keep'], 'k')
  const stream = await parent.call('/stream')
  t.equal(stream.text, 'chunk0\nchunk1\nchunk2\nchunk3\nchunk4\n')
  t.equal(stream.headers['x-custom'], 'yes')
  const many = await Promise.all(Array.from({ length: 40 }, () => parent.call('/m')))
  t.ok(many.every((r) => r.status === 200))
  t.equal(child.sessions.size, 1, 'all of it multiplexed on one session')
  t.equal(parent.pool.status().connected, true)
  await until('a PING answered', () => parent.pool.status().last_ping_rtt_ms)
})

t.test('a frozen link: in-flight requests fail, new ones fail fast, traffic resumes after thaw', async (t) => {
  const child = await startH2Child(t)
  const relay = await startRelay(t, child.port)
  const parent = await startParentSide(t, relay.port)
  t.equal((await parent.call('/warm')).status, 200)
  const inFlight = parent.call('/slow')
  await until('the slow request at the child', () => child.seen.some((s) => s.path === '/slow') || undefined)
  relay.freeze()
  const failed = await inFlight
  t.equal(failed.status, 504, 'the in-flight request fails with 504 once the PING times out')
  t.equal(failed.headers['x-failure'], 'timeout')
  t.ok(failed.ms < 1500, `in-flight failed after ${Math.round(failed.ms)} ms (ping 100 + timeout 200)`)
  await until('the reset to be counted', () => parent.resets() === 1 || undefined, 2000)
  const reset = parent.lines.find((l) => l.msg === 'chain session reset')
  t.equal(reset?.reason, 'ping timeout')
  t.equal(reset?.child, 'c1')
  for (let i = 0; i < 5; i++) {
    const fast = await parent.call('/during')
    t.equal(fast.status, 502, 'refused while the child is down')
    t.ok(fast.ms < 100, `answered in ${Math.round(fast.ms)} ms`)
  }
  t.equal(parent.pool.status().health, 'down')
  relay.thaw()
  const back = await until('traffic to resume', async () => {
    const r = await parent.call('/after')
    return r.status === 200 ? r : undefined
  }, 5000)
  t.equal(back.status, 200)
  t.equal(parent.pool.status().health, 'up')
  t.ok(parent.lines.some((l) => l.msg === 'chain child up again'))
})

t.test('an unreachable child fails fast, and is used as soon as it listens', async (t) => {
  const port = await deadPort()
  const parent = await startParentSide(t, port)
  const first = await parent.call('/x')
  t.equal(first.status, 502)
  t.equal(first.headers['x-failure'], 'refused')
  t.ok(first.ms < 500, `refused in ${Math.round(first.ms)} ms`)
  const second = await parent.call('/x')
  t.equal(second.status, 502)
  t.ok(second.ms < 50, 'refused at once while down')
  t.equal(parent.resets(), 0, 'a session that never opened is not a reset')
  // The child comes up on that port: a probe finds it.
  const server = http2.createServer((_req, res) => { res.end('up') })
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => { server.close(() => { resolve() }) }))
  const up = await until('the probe to find the child', async () => {
    const r = await parent.call('/x')
    return r.status === 200 ? r : undefined
  }, 5000)
  t.equal(up.text, 'up')
})

t.test('a child that accepts but never speaks HTTP/2 fails within the connect timeout', async (t) => {
  const silent = net.createServer(() => { /* accept, say nothing */ })
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
  const sockets = new Set<net.Socket>()
  silent.on('connection', (s) => { sockets.add(s) })
  t.teardown(() => new Promise<void>((resolve) => { for (const s of sockets) s.destroy(); silent.close(() => { resolve() }) }))
  const parent = await startParentSide(t, (silent.address() as net.AddressInfo).port, { connectTimeoutMs: 300 })
  const res = await parent.call('/x')
  t.equal(res.status, 502)
  t.equal(res.headers['x-failure'], 'connect_timeout')
  t.ok(res.ms < 1500, `failed after ${Math.round(res.ms)} ms`)
})

t.test('no response headers in time gives 504, without marking the child down', async (t) => {
  const child = await startH2Child(t)
  const parent = await startParentSide(t, child.port, { responseTimeoutMs: 300 })
  const res = await parent.call('/never')
  t.equal(res.status, 504)
  t.equal(res.headers['x-failure'], 'timeout')
  t.equal(parent.pool.status().health, 'up', 'a slow answer does not mark the child down')
  t.equal((await parent.call('/ok')).status, 200)
})

t.test('a client that leaves cancels its stream at the child', async (t) => {
  const child = await startH2Child(t)
  const parent = await startParentSide(t, child.port)
  const ac = new AbortController()
  const call = parent.call('/never', { signal: ac.signal }).catch((err: Error) => err)
  await until('the request at the child', () => child.seen.some((s) => s.path === '/never') || undefined)
  ac.abort()
  t.ok((await call) instanceof Error)
  await until('the child to see the stream cancelled', () => child.aborted.includes('/never') || undefined, 3000)
  t.equal(parent.pool.status().streams, 0)
})

t.test('a GOAWAY from the child (graceful restart) moves new requests to a fresh session', async (t) => {
  const child = await startH2Child(t)
  const parent = await startParentSide(t, child.port)
  t.equal((await parent.call('/one')).status, 200)
  for (const s of child.sessions) s.close()
  await until('the parent to see the GOAWAY', () => parent.pool.status().sessions === 0 || undefined)
  t.equal((await parent.call('/two')).status, 200)
  t.equal(parent.resets(), 0, 'a graceful close is not a reset')
})

t.test('an idle session is closed after idle_timeout', async (t) => {
  const child = await startH2Child(t)
  const parent = await startParentSide(t, child.port, { idleTimeoutMs: 200 })
  t.equal((await parent.call('/one')).status, 200)
  t.equal(parent.pool.status().sessions, 1)
  await until('the idle session to close', () => parent.pool.status().sessions === 0 || undefined, 3000)
  t.equal((await parent.call('/two')).status, 200, 'a new session opens on demand')
})
