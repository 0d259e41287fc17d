/**
 * Client behaviours that used to leave proxy→VM connections held after the client
 * was gone (issue 9 point 1), as raw node:net sockets, plus the measurements that
 * prove nothing stayed behind. `npm test` runs them small (test/adversarial/
 * upstream-*.test.ts); a torture runner calls `runUpstreamAttack` with the numbers of
 * `slowhttptest -c 200 -X -r 200 -w 512 -y 1024 -n 5 -z 32 -k 3 -l 20`.
 */
import net from 'node:net'
import http from 'node:http'
import http2 from 'node:http2'
import { execFileSync } from 'node:child_process'

/**
 * How one attacking client misbehaves:
 * - `pipeline-reset`: pipelines its requests, never reads, then resets the connection.
 * - `pipeline-close`: the same, but leaves with a FIN.
 * - `slow-read`: pipelines, reads `readBytes` every `readIntervalMs` (slowhttptest -X), closes at the end.
 * - `zero-window`: pipelines and never reads until it leaves (reset).
 * - `reset-mid-body`: reads part of the first response body, then resets.
 * - `leave-queued`: pipelines and resets at once, while its requests wait for a pool slot.
 * - `upload-abort`: starts a POST with a large Content-Length, sends part of it, then resets.
 * - `h2-cancel`: over HTTP/2 (TLS port), opens `pipeline` streams, never reads, then cancels each stream.
 * - `h2-vanish`: the same, then drops the TCP connection without a GOAWAY.
 */
export type UpstreamAttackKind = 'pipeline-reset' | 'pipeline-close' | 'slow-read' | 'zero-window' | 'reset-mid-body' | 'leave-queued' | 'upload-abort' | 'h2-cancel' | 'h2-vanish'

export const UPSTREAM_ATTACK_KINDS: readonly UpstreamAttackKind[] = ['pipeline-reset', 'pipeline-close', 'slow-read', 'zero-window', 'reset-mid-body', 'leave-queued', 'upload-abort', 'h2-cancel', 'h2-vanish']

export interface UpstreamAttackOptions {
  /** The proxy's plain HTTP port (127.0.0.1). */
  port: number
  /** The proxy's HTTPS port, for the h2-* kinds. */
  tlsPort?: number
  /** Host header routed to the VM under attack. */
  host: string
  /** A path whose response is much larger than the socket buffers. */
  path: string
  kind: UpstreamAttackKind
  /** Attacking connections (slowhttptest -c). */
  connections: number
  /** Requests pipelined per connection (slowhttptest -k). */
  pipeline: number
  /** How long each attacker stays before it leaves (slowhttptest -l). */
  holdMs: number
  /** New connections per second (slowhttptest -r); 0: all at once. */
  ratePerSecond?: number
  /** slow-read: bytes read per interval (slowhttptest -z) and the interval (-n). */
  readBytes?: number
  readIntervalMs?: number
}

export interface UpstreamAttackResult {
  /** Attacking connections that were opened. */
  opened: number
  /** Bytes the attackers read in total. */
  bytesRead: number
}

function request (host: string, path: string, kind: UpstreamAttackKind): string {
  if (kind === 'upload-abort') return `POST ${path} HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/octet-stream\r\nContent-Length: 10485760\r\n\r\n`
  return `GET ${path} HTTP/1.1\r\nHost: ${host}\r\n\r\n`
}

/** An HTTP/2 client that opens streams it never reads, then cancels them or vanishes. */
function h2Attacker (options: UpstreamAttackOptions, result: UpstreamAttackResult): Promise<void> {
  return new Promise((resolve) => {
    const session = http2.connect(`https://127.0.0.1:${options.tlsPort ?? 0}`, { servername: options.host, rejectUnauthorized: false })
    result.opened++
    session.on('error', () => {})
    session.on('close', () => { resolve() })
    const streams: http2.ClientHttp2Stream[] = []
    for (let i = 0; i < options.pipeline; i++) {
      const stream = session.request({ ':path': options.path, ':authority': options.host })
      stream.on('error', () => {})
      // Never read: the stream's flow-control window fills and stays full.
      stream.pause()
      streams.push(stream)
    }
    setTimeout(() => {
      if (options.kind === 'h2-vanish') {
        session.socket?.destroy()
        session.destroy()
        return
      }
      // destroy() sends RST_STREAM(CANCEL) and drops what was buffered unread.
      for (const stream of streams) stream.destroy()
      session.close()
    }, options.holdMs)
  })
}

/** Runs one attacking client; resolves when it has left. */
function attacker (options: UpstreamAttackOptions, result: UpstreamAttackResult): Promise<void> {
  const { kind } = options
  if (kind === 'h2-cancel' || kind === 'h2-vanish') return h2Attacker(options, result)
  return new Promise((resolve) => {
    const socket = net.connect(options.port, '127.0.0.1')
    result.opened++
    let timer: NodeJS.Timeout | undefined
    let reader: NodeJS.Timeout | undefined
    const leave = (how: 'reset' | 'close'): void => {
      clearTimeout(timer)
      clearInterval(reader)
      if (socket.destroyed) return
      if (how === 'reset') socket.resetAndDestroy()
      else socket.destroy()
    }
    socket.on('error', () => {})
    socket.on('close', () => { clearTimeout(timer); clearInterval(reader); resolve() })
    socket.once('connect', () => {
      const one = request(options.host, options.path, kind)
      socket.write(kind === 'upload-abort' ? one + 'x'.repeat(64 * 1024) : one.repeat(options.pipeline))
      if (kind === 'leave-queued') {
        // One turn later the proxy has parsed the requests and dispatched them.
        setImmediate(() => { leave('reset') })
        return
      }
      if (kind === 'reset-mid-body') {
        let seen = 0
        socket.on('data', (chunk: Buffer) => {
          result.bytesRead += chunk.length
          seen += chunk.length
          if (seen > 32 * 1024) leave('reset')
        })
      } else if (kind === 'slow-read') {
        socket.pause()
        const bytes = options.readBytes ?? 32
        reader = setInterval(() => {
          const chunk = socket.read(bytes) as Buffer | null
          if (chunk !== null) result.bytesRead += chunk.length
        }, options.readIntervalMs ?? 5000)
      } else {
        // Never read: the kernel's receive window fills and stays full.
        socket.pause()
      }
      timer = setTimeout(() => { leave(kind === 'pipeline-close' || kind === 'slow-read' ? 'close' : 'reset') }, options.holdMs)
    })
  })
}

/** Runs the attack to its end: every attacker has connected, held and left. */
export async function runUpstreamAttack (options: UpstreamAttackOptions): Promise<UpstreamAttackResult> {
  const result: UpstreamAttackResult = { opened: 0, bytesRead: 0 }
  const all: Array<Promise<void>> = []
  const gapMs = options.ratePerSecond !== undefined && options.ratePerSecond > 0 ? 1000 / options.ratePerSecond : 0
  for (let i = 0; i < options.connections; i++) {
    all.push(attacker(options, result))
    if (gapMs > 0) await new Promise((resolve) => setTimeout(resolve, gapMs))
  }
  await Promise.all(all)
  return result
}

/** The slowhttptest parameters of issue 9 (-c 200 -r 200 -n 5 -z 32 -k 3 -l 20), for the torture run. */
export function slowReadAtFullScale (port: number, host: string, path: string): UpstreamAttackOptions {
  return { port, host, path, kind: 'slow-read', connections: 200, pipeline: 3, holdMs: 20_000, ratePerSecond: 200, readBytes: 32, readIntervalMs: 5000 }
}

/**
 * A VM for the attacks: `/big` answers `bigBytes` written with backpressure, `/huge`
 * 1 GiB (more than any socket buffers hold), any other path a short body.
 */
export async function startBigVm (bigBytes = 4 * 1024 * 1024): Promise<{ server: http.Server, port: number, requests: () => number, connections: () => Promise<number>, close: () => Promise<void> }> {
  const chunk = Buffer.alloc(64 * 1024, 0x61)
  let requests = 0
  const server = http.createServer((req, res) => {
    requests++
    if (req.method === 'POST') {
      req.resume()
      req.on('end', () => { res.end('uploaded') })
      return
    }
    // A query string names a request apart in the access log; the body is the path's.
    const path = req.url?.split('?')[0]
    if (path !== '/big' && path !== '/huge') {
      res.end('ok')
      return
    }
    const size = path === '/big' ? bigBytes : 1024 * 1024 * 1024
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size })
    let left = size
    const pump = (): void => {
      while (left > 0) {
        const n = Math.min(left, chunk.length)
        left -= n
        if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) { res.once('drain', pump); return }
      }
      res.end()
    }
    pump()
  })
  server.keepAliveTimeout = 60_000
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as net.AddressInfo).port
  return {
    server,
    port,
    requests: () => requests,
    connections: () => new Promise((resolve, reject) => { server.getConnections((err, n) => { if (err !== null) reject(err); else resolve(n) }) }),
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => { resolve() }) })
  }
}

/**
 * The proxy's side of its connections to `vmPort` as `ss` sees them: how many are
 * established and how many have unread bytes waiting in their receive queue.
 */
export function upstreamSockets (vmPort: number): { established: number, withUnread: number, unreadBytes: number } {
  const out = execFileSync('ss', ['-tnH', 'state', 'established', `( dport = :${vmPort} )`], { encoding: 'utf8' })
  let established = 0
  let withUnread = 0
  let unreadBytes = 0
  for (const line of out.split('\n')) {
    const fields = line.trim().split(/\s+/)
    if (fields.length < 4) continue
    established++
    const recvQ = Number(fields[0])
    if (recvQ > 0) { withUnread++; unreadBytes += recvQ }
  }
  return { established, withUnread, unreadBytes }
}

/** One GET through the proxy; resolves with the status (0 when no answer in `timeoutMs`). */
export function normalGet (port: number, host: string, path = '/', timeoutMs = 5000): Promise<{ status: number, ms: number }> {
  const start = performance.now()
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path, headers: { host }, agent: false, timeout: timeoutMs }, (res) => {
      res.resume()
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, ms: performance.now() - start }) })
      res.on('error', () => { resolve({ status: 0, ms: performance.now() - start }) })
    })
    req.on('timeout', () => { req.destroy() })
    req.on('error', () => { resolve({ status: 0, ms: performance.now() - start }) })
  })
}

export interface UpstreamTortureResult {
  attack: string
  /** A normal client's GET / every 200 ms during the attack. */
  normal: { requests: number, failed: number, p50Ms: number, p99Ms: number }
  /** Most proxy→VM connections seen at once (ss, every 100 ms); the limit is max_connections_per_target. */
  peakUpstream: number
  /** After the attack and `settleMs`: proxy→VM connections still open, and those with unread data. */
  leakedUpstream: number
  stuckWithUnread: number
  fds: { before: number, after: number }
  rssKiB: { before: number, after: number }
  /** A normal client's status once the attack is over. */
  normalAfter: number
}

/**
 * The torture version, end to end: a proxy process with the given extra TOML, a VM
 * serving 4 MiB at /big, the attack (slowhttptest with issue 9's parameters, or
 * `runUpstreamAttack` at the same scale when `tool` is 'node'), a normal client
 * throughout, then the leak measurements after `settleMs` (past upstream.keepalive).
 */
export async function measureUpstreamAttack (t: { teardown (fn: () => unknown): void }, options: { tool: 'slowhttptest' | 'node', toml?: string, settleMs?: number }): Promise<UpstreamTortureResult> {
  const { startProxyProcess, routesDoc } = await import('../helpers/proxy-process.ts')
  const { readdirSync, readFileSync } = await import('node:fs')
  const { spawn } = await import('node:child_process')
  const vm = await startBigVm()
  t.teardown(vm.close)
  const proxy = await startProxyProcess(t, { routes: routesDoc([{ domain: 'localhost', target: `http://127.0.0.1:${vm.port}` }]), toml: options.toml ?? '' })
  const pid = proxy.child.pid ?? 0
  const fds = (): number => readdirSync(`/proc/${pid}/fd`).length
  const rss = (): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0)
  const before = { fds: fds(), rss: rss() }
  let peak = 0
  let stop = false
  const latencies: number[] = []
  let failed = 0
  const sampler = (async () => {
    while (!stop) {
      peak = Math.max(peak, upstreamSockets(vm.port).established)
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  })()
  const normal = (async () => {
    while (!stop) {
      const r = await normalGet(proxy.ports.http, 'localhost', '/', 70_000)
      if (r.status === 200) latencies.push(r.ms)
      else failed++
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
  })()
  let attack: string
  if (options.tool === 'slowhttptest') {
    const args = ['-c', '200', '-X', '-r', '200', '-w', '512', '-y', '1024', '-n', '5', '-z', '32', '-k', '3', '-u', `http://localhost:${proxy.ports.http}/big`, '-l', '20']
    attack = `slowhttptest ${args.join(' ')}`
    await new Promise<void>((resolve, reject) => {
      const child = spawn('slowhttptest', args, { stdio: 'ignore' })
      child.on('error', reject)
      child.on('exit', () => { resolve() })
    })
  } else {
    const opts = slowReadAtFullScale(proxy.ports.http, 'localhost', '/big')
    attack = `runUpstreamAttack slow-read c=${opts.connections} k=${opts.pipeline} l=${opts.holdMs / 1000}s`
    await runUpstreamAttack(opts)
  }
  stop = true
  await Promise.all([sampler, normal])
  await new Promise((resolve) => setTimeout(resolve, options.settleMs ?? 6000))
  const after = upstreamSockets(vm.port)
  latencies.sort((a, b) => a - b)
  const pct = (p: number): number => Math.round(latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? -1)
  return {
    attack,
    normal: { requests: latencies.length + failed, failed, p50Ms: pct(0.5), p99Ms: pct(0.99) },
    peakUpstream: peak,
    leakedUpstream: after.established,
    stuckWithUnread: after.withUnread,
    fds: { before: before.fds, after: fds() },
    rssKiB: { before: before.rss, after: rss() },
    normalAfter: (await normalGet(proxy.ports.http, 'localhost', '/', 5000)).status
  }
}
