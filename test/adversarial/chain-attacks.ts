/**
 * Chain attacks as plain functions, for the bounded regression tests here and for
 * a torture runner that calls them with bigger numbers. Each takes a Teardown
 * (tap's `t`, or any object with `teardown(fn)`) and cleans up after itself there.
 */
import { createHmac } from 'node:crypto'
import { readFileSync } from 'node:fs'
import http2 from 'node:http2'
import net from 'node:net'
import { Agent, request } from 'undici'
import { startParent, PSK } from '../chain/chain-helpers.ts'

interface Teardown { teardown (fn: () => unknown): void }

/** Resident set size of a process, in bytes (Linux /proc). */
export function rssOf (pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m === null ? 0 : Number(m[1]) * 1024
}

export interface RegistrationFloodOptions {
  /** Children to register, each under its own name. */
  children: number
  /** Domains per child. */
  domainsPerChild?: number
  /** Registrations in flight at once. */
  concurrency?: number
  /** Extra `[chain]` keys of the parent (e.g. max_children). */
  chain?: Record<string, string | number>
}

export interface RegistrationFloodResult {
  /** Time for every registration to be answered. */
  ms: number
  /** Answers by HTTP status. */
  statuses: Record<number, number>
  /** The parent's RSS before and after (bytes). */
  rssBefore: number
  rssAfter: number
  /** A sample of refused answers' bodies (first of each status). */
  samples: Record<number, unknown>
  /** The parent process, to inspect further. */
  parent: Awaited<ReturnType<typeof startParent>>
}

/**
 * Registers `children` children with a fresh parent process, `concurrency` at a
 * time, like a fleet of hosts (or one attacker holding the PSK) would.
 */
export async function registrationFlood (t: Teardown, options: RegistrationFloodOptions): Promise<RegistrationFloodResult> {
  const perChild = options.domainsPerChild ?? 2
  const parent = await startParent(t, { chain: { lease_ttl: '10m', ...options.chain } })
  const agent = new Agent({ connections: options.concurrency ?? 8 })
  t.teardown(() => agent.close())
  const pid = parent.child.pid!
  const rssBefore = rssOf(pid)
  const statuses: Record<number, number> = {}
  const samples: Record<number, unknown> = {}
  let next = 0
  const start = performance.now()
  async function worker (): Promise<void> {
    while (next < options.children) {
      const i = next++
      const res = await request(`${parent.api}/register`, {
        dispatcher: agent,
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${PSK}` },
        body: JSON.stringify({
          name: `flood-${i}`,
          child_url: `http://127.0.0.1:${1024 + (i % 50000)}`,
          domains: Array.from({ length: perChild }, (_, d) => ({ domain: `d${d}.c${i}.flood.example.com` }))
        })
      })
      const body = await res.body.json()
      statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1
      if (res.statusCode !== 200 && !(res.statusCode in samples)) samples[res.statusCode] = body
    }
  }
  await Promise.all(Array.from({ length: options.concurrency ?? 8 }, worker))
  const ms = performance.now() - start
  return { ms, statuses, rssBefore, rssAfter: rssOf(pid), samples, parent }
}

/** The static token that vmfront before issue 9 accepted from any peer: HMAC-SHA256(psk, label). */
export function oldForwardToken (psk: string): string {
  return createHmac('sha256', psk).update('vmfront-chain-forward-v1').digest('hex')
}

export interface SpoofResult {
  statuses: Record<number, number>
  /** What the VM was told about the client, per answered request (from the echo backend). */
  seen: Array<{ realIp: string | undefined, forwardedFor: string | undefined, chainHeader: string | undefined }>
}

/**
 * Sends `n` requests straight to a child's listener, as a client that copied the
 * chain header (and spoofs X-Forwarded-For / X-Real-IP). `http2` uses h2c prior
 * knowledge, like a parent's session. The VM must be an echo backend.
 */
export async function spoofChainHeader (port: number, host: string, headerValue: string, n: number, options: { http2?: boolean, localAddress?: string } = {}): Promise<SpoofResult> {
  const statuses: Record<number, number> = {}
  const seen: SpoofResult['seen'] = []
  const spoof = { 'x-vmfront-chain': headerValue, 'x-forwarded-for': '6.6.6.6', 'x-real-ip': '6.6.6.6' }
  const record = (status: number, body: string): void => {
    statuses[status] = (statuses[status] ?? 0) + 1
    if (status !== 200) return
    const headers = (JSON.parse(body) as { headers: Record<string, string> }).headers
    seen.push({ realIp: headers['x-real-ip'], forwardedFor: headers['x-forwarded-for'], chainHeader: headers['x-vmfront-chain'] })
  }
  if (options.http2 === true) {
    const session = http2.connect(`http://127.0.0.1:${port}`, { createConnection: () => net.connect({ port, host: '127.0.0.1', localAddress: options.localAddress }) })
    try {
      for (let i = 0; i < n; i++) {
        const { status, body } = await new Promise<{ status: number, body: string }>((resolve, reject) => {
          const stream = session.request({ ':path': `/spoof-${i}`, ':authority': host, ...spoof })
          let status = 0
          let body = ''
          stream.on('response', (h) => { status = Number(h[':status']) })
          stream.setEncoding('utf8')
          stream.on('data', (c: string) => { body += c })
          stream.on('end', () => { resolve({ status, body }) })
          stream.on('error', reject)
        })
        record(status, body)
      }
    } finally {
      session.destroy()
    }
    return { statuses, seen }
  }
  const agent = new Agent({ connections: 1, ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }) })
  try {
    for (let i = 0; i < n; i++) {
      const res = await request(`http://127.0.0.1:${port}/spoof-${i}`, { dispatcher: agent, headers: { host, ...spoof } })
      record(res.statusCode, await res.body.text())
    }
  } finally {
    await agent.close()
  }
  return { statuses, seen }
}

/** A TCP relay that records what each connection sends toward the target (a parent's bytes to its child). */
export interface RecordingRelay {
  port: number
  /** Bytes sent toward the target, one entry per connection, in accept order. */
  captured (): Buffer[]
  close (): Promise<void>
}

export async function startRecordingRelay (t: Teardown, targetPort: number): Promise<RecordingRelay> {
  const captured: Buffer[][] = []
  const sockets = new Set<net.Socket>()
  const server = net.createServer((downstream) => {
    const chunks: Buffer[] = []
    captured.push(chunks)
    const upstream = net.connect(targetPort, '127.0.0.1')
    for (const s of [downstream, upstream]) {
      sockets.add(s)
      s.on('close', () => { sockets.delete(s); downstream.destroy(); upstream.destroy() })
      s.on('error', () => {})
    }
    downstream.on('data', (c: Buffer) => { chunks.push(c) })
    downstream.pipe(upstream)
    upstream.pipe(downstream)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const relay: RecordingRelay = {
    port: (server.address() as net.AddressInfo).port,
    captured: () => captured.map((chunks) => Buffer.concat(chunks)),
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy()
      server.close(() => { resolve() })
    })
  }
  t.teardown(() => relay.close())
  return relay
}

/**
 * Replays `bytes` on a new connection from `localAddress` and resolves with what
 * came back once the other side closes, or after `timeoutMs` (the connection is
 * then closed: a replayed WebSocket stays open).
 */
export function replayBytes (port: number, bytes: Buffer, localAddress: string, timeoutMs: number): Promise<{ received: Buffer, closedByPeer: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    const socket = net.connect({ port, host: '127.0.0.1', localAddress }, () => { socket.write(bytes) })
    const timer = setTimeout(() => { finish(false) }, timeoutMs)
    let done = false
    function finish (closedByPeer: boolean): void {
      if (done) return
      done = true
      clearTimeout(timer)
      socket.destroy()
      resolve({ received: Buffer.concat(chunks), closedByPeer })
    }
    socket.on('data', (c: Buffer) => { chunks.push(c) })
    socket.on('close', () => { finish(true) })
    socket.on('error', () => { finish(true) })
  })
}

/** A WebSocket handshake (no frames) with extra headers; resolves with the response head. */
export function webSocketHandshake (port: number, host: string, options: { path?: string, localAddress?: string, headers?: Record<string, string>, timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }) })
    const timer = setTimeout(() => { socket.destroy(); reject(new Error('websocket handshake timed out')) }, options.timeoutMs ?? 5000)
    let buf = ''
    const extra = Object.entries(options.headers ?? {}).map(([k, v]) => `${k}: ${v}\r\n`).join('')
    socket.setEncoding('latin1')
    socket.on('error', (err) => { clearTimeout(timer); reject(err) })
    socket.on('data', (c: string) => {
      buf += c
      const end = buf.indexOf('\r\n\r\n')
      if (end === -1) return
      clearTimeout(timer)
      socket.destroy()
      resolve(buf.slice(0, end))
    })
    socket.write(`GET ${options.path ?? '/ws'} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`)
  })
}

/**
 * Records the upgrade requests an echo backend takes and ends their tunnels at
 * teardown: a handshake-only client sends no close frame, and a half-open tunnel
 * would keep the backend from closing. Call right after starting the backend.
 */
export function trackUpgrades (t: Teardown, server: import('node:http').Server): Array<import('node:http').IncomingHttpHeaders> {
  const headers: Array<import('node:http').IncomingHttpHeaders> = []
  const tunnels = new Set<import('node:stream').Duplex>()
  server.prependListener('upgrade', (req: import('node:http').IncomingMessage, socket: import('node:stream').Duplex) => {
    headers.push(req.headers)
    tunnels.add(socket)
  })
  t.teardown(() => { for (const socket of tunnels) socket.destroy() })
  return headers
}

/**
 * Sends `n` chain API calls with wrong or missing PSKs through `fetchLike` (a
 * hono app's `request`, or `fetch` bound to a parent's API origin). Resolves
 * with the answers by status.
 */
export async function wrongPskFlood (fetchLike: (path: string, init: RequestInit) => Promise<Response> | Response, n: number): Promise<Record<number, number>> {
  const statuses: Record<number, number> = {}
  for (let i = 0; i < n; i++) {
    const headers: Record<string, string> = { 'content-type': 'application/json' }
    if (i % 2 === 0) headers.authorization = `Bearer guess-${i}-0123456789`
    const res = await fetchLike('/chain/v1/register', { method: 'POST', headers, body: JSON.stringify({ name: `x${i}`, child_url: 'http://127.0.0.1:1', domains: [] }) })
    await res.arrayBuffer()
    statuses[res.status] = (statuses[res.status] ?? 0) + 1
  }
  return statuses
}
