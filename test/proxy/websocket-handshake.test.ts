// Issue 9 point 3: a WebSocket handshake with a VM is bounded by upstream_response
// (504, failure 'timeout', upstream socket destroyed), and ends with its client.
// The WebSocket proxy runs in-process behind a real listener; clients and VMs are
// real sockets.
import t from 'tap'
import http from 'node:http'
import net from 'node:net'
import { createWebSocketProxy } from '../../proxy/websocket.ts'
import type { UpstreamFailure } from '../../proxy/http-types.ts'
import { startBackend } from '../helpers/backend.ts'
import { startProxyProcess, routesDoc } from '../helpers/proxy-process.ts'
import { pollUntil } from '../helpers/pebble.ts'

interface Teardown { teardown (fn: () => unknown): void }

const CLIENT = { clientIp: '127.0.0.1', forwardedFor: '127.0.0.1', proto: 'http', forwardedHost: 'ws.test', requestId: 'test-request-id' }
const UPGRADE = 'GET /ws HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n'

async function listen (t: Teardown, server: net.Server): Promise<number> {
  // Upgraded sockets are not closed by closeAllConnections(): track them all.
  const sockets = new Set<net.Socket>()
  server.on('connection', (socket: net.Socket) => {
    sockets.add(socket)
    socket.once('close', () => { sockets.delete(socket) })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => {
    for (const socket of sockets) socket.destroy()
    server.close(() => { resolve() })
  }))
  return (server.address() as net.AddressInfo).port
}

/** A VM that accepts TCP and never answers; keeps its sockets to watch them close. */
async function startSilentVm (t: Teardown): Promise<{ port: number, sockets: net.Socket[], accepted: () => Promise<net.Socket> }> {
  const sockets: net.Socket[] = []
  let waiter: ((s: net.Socket) => void) | undefined
  const server = net.createServer((socket) => {
    sockets.push(socket)
    socket.on('error', () => {})
    // Hand the socket over once the upgrade request has arrived on it.
    socket.once('data', () => { waiter?.(socket) })
  })
  t.teardown(() => { for (const s of sockets) s.destroy() })
  const port = await listen(t, server)
  return { port, sockets, accepted: () => new Promise((resolve) => { waiter = resolve }) }
}

/** The WebSocket proxy behind a plain listener, recording each `done`. */
async function startWsProxy (t: Teardown, origin: string, options: { responseTimeoutMs: number, idleTimeoutMs?: number }): Promise<{ port: number, outcomes: Array<{ status: number, failure?: UpstreamFailure }>, settled: () => Promise<{ status: number, failure?: UpstreamFailure }> }> {
  const ws = createWebSocketProxy({ connectTimeoutMs: 5000, idleTimeoutMs: options.idleTimeoutMs ?? 0, responseTimeoutMs: options.responseTimeoutMs })
  t.teardown(() => { ws.close() })
  const outcomes: Array<{ status: number, failure?: UpstreamFailure }> = []
  let waiter: (() => void) | undefined
  const server = http.createServer((_req, res) => { res.end() })
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    socket.on('error', () => {})
    ws.upgrade(req, socket, head, origin, CLIENT, (status, failure) => {
      outcomes.push({ status, failure })
      waiter?.()
    })
  })
  const port = await listen(t, server)
  return {
    port,
    outcomes,
    settled: () => new Promise((resolve) => {
      const check = (): void => { if (outcomes.length > 0) resolve(outcomes[0]) }
      waiter = check
      check()
    })
  }
}

/** `promise`'s value, or undefined when it takes longer than `ms` (keeps a failing test bounded). */
async function within<T> (promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined
  const value = await Promise.race([promise, new Promise<undefined>((resolve) => { timer = setTimeout(() => { resolve(undefined) }, ms) })])
  clearTimeout(timer)
  return value
}

/** Sends `text` on a fresh socket; resolves with what came back and when the socket closed. */
function exchange (port: number, text: string): { socket: net.Socket, result: Promise<{ data: string, ms: number }> } {
  const socket = net.connect(port, '127.0.0.1')
  const start = performance.now()
  let data = ''
  socket.setEncoding('latin1')
  socket.on('data', (c: string) => { data += c })
  socket.on('error', () => {})
  socket.write(text)
  return { socket, result: new Promise((resolve) => { socket.on('close', () => { resolve({ data, ms: performance.now() - start }) }) }) }
}

t.test('a VM that accepts TCP and never answers: 504 at upstream_response, its socket destroyed', async (t) => {
  const vm = await startSilentVm(t)
  const proxy = await startWsProxy(t, `http://127.0.0.1:${vm.port}`, { responseTimeoutMs: 1000 })
  const { socket, result } = exchange(proxy.port, UPGRADE)
  t.teardown(() => { socket.destroy() })
  const upstream = await vm.accepted()
  const upstreamClosed = new Promise<void>((resolve) => { upstream.once('close', () => { resolve() }) })
  const answer = await within(result, 3000)
  t.match(answer?.data, /^HTTP\/1\.1 504 /, 'the client is answered 504')
  const ms = answer?.ms ?? Infinity
  t.ok(ms >= 950 && ms < 1800, `after upstream_response (${Math.round(ms)} ms)`)
  t.same(await within(proxy.settled(), 1000), { status: 504, failure: 'timeout' }, "recorded as a 504 with failure 'timeout'")
  t.equal(await within(upstreamClosed.then(() => true), 1000), true, 'the upstream socket was closed')
})

t.test('a client that leaves during the handshake takes the upstream socket with it', async (t) => {
  const vm = await startSilentVm(t)
  // A long deadline: what closes the upstream socket here must be the client leaving.
  const proxy = await startWsProxy(t, `http://127.0.0.1:${vm.port}`, { responseTimeoutMs: 30_000 })
  const { socket } = exchange(proxy.port, UPGRADE)
  const upstream = await vm.accepted()
  const upstreamClosed = new Promise<number>((resolve) => { upstream.once('close', () => { resolve(performance.now()) }) })
  const left = performance.now()
  socket.destroy()
  const closedAt = await within(upstreamClosed, 3000) ?? Infinity
  t.ok(closedAt - left < 1000, `the upstream socket closed ${Math.round(closedAt - left)} ms after the client left`)
  t.same(await within(proxy.settled(), 1000), { status: 499, failure: 'client_abort' }, 'recorded as a client abort')
})

t.test('an answered upgrade tunnels as before; a VM refusing the upgrade is recorded with its status', async (t) => {
  const vm = await startBackend(t, (_req, res) => { res.end() })
  const proxy = await startWsProxy(t, vm.origin, { responseTimeoutMs: 1000 })
  const { socket, result } = exchange(proxy.port, UPGRADE)
  await pollUntil(() => vm.requests.length === 0 && socket.bytesRead > 0, 3000, 'the 101')
  socket.end(Buffer.from([0x88, 0x80, 0, 0, 0, 0]))
  const tunnel = await within(result, 3000)
  t.match(tunnel?.data, /^HTTP\/1\.1 101 /, 'switched protocols')
  t.same(await within(proxy.settled(), 1000), { status: 101 }, 'recorded as 101 when the tunnel closes')

  const refusing = await startBackend(t)
  refusing.server.removeAllListeners('upgrade')
  refusing.server.on('upgrade', (_req: http.IncomingMessage, s: net.Socket) => { s.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n') })
  const proxy2 = await startWsProxy(t, refusing.origin, { responseTimeoutMs: 1000 })
  const refused = exchange(proxy2.port, UPGRADE)
  const answer = await within(refused.result, 3000)
  t.match(answer?.data, /^HTTP\/1\.1 403 /, "the VM's answer reaches the client")
  t.same(await within(proxy2.settled(), 1000), { status: 403 }, "recorded with the VM's status")
})

t.test('websocket_idle closes a silent open tunnel, both sides', async (t) => {
  const vm = await startBackend(t)
  let upstreamEnded: Promise<void> | undefined
  vm.server.on('upgrade', (_req: http.IncomingMessage, upstream: net.Socket) => {
    upstreamEnded = new Promise((resolve) => { upstream.once('end', () => { resolve() }) })
    // The echo VM never closes a half-closed socket by itself; the server must close.
    t.teardown(() => { upstream.destroy() })
  })
  const proxy = await startWsProxy(t, vm.origin, { responseTimeoutMs: 1000, idleTimeoutMs: 500 })
  const { socket, result } = exchange(proxy.port, UPGRADE)
  t.teardown(() => { socket.destroy() })
  const outcome = await within(result, 3000)
  t.ok(outcome !== undefined, 'the proxy closed the silent tunnel')
  t.match(outcome?.data ?? '', /^HTTP\/1\.1 101 /)
  t.ok((outcome?.ms ?? Infinity) >= 450, `after websocket_idle (${Math.round(outcome?.ms ?? Infinity)} ms)`)
  t.equal(await within((upstreamEnded ?? Promise.resolve()).then(() => true), 1000), true, 'the VM side was closed too')
})

t.test('through a proxy process: a client leaving during the handshake closes the VM connection', async (t) => {
  const vm = await startSilentVm(t)
  const proxy = await startProxyProcess(t, { routes: routesDoc([{ domain: 'ws.test', target: `http://127.0.0.1:${vm.port}` }]) })
  const { socket } = exchange(proxy.ports.http, UPGRADE)
  const upstream = await vm.accepted()
  upstream.resume()
  const upstreamClosed = new Promise<number>((resolve) => { upstream.once('close', () => { resolve(performance.now()) }) })
  const left = performance.now()
  socket.resetAndDestroy()
  const closedAt = await within(upstreamClosed, 3000) ?? Infinity
  t.ok(closedAt - left < 1000, `the VM connection closed ${Math.round(closedAt - left)} ms after the client left`)
  const line = await proxy.waitForLog((l) => l.msg === 'access' && l.path === '/ws', 3000)
  t.equal(line.status, 499, 'logged as a client abort')
})
