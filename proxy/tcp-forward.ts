/**
 * @module proxy/tcp-forward
 * TCP port forwarding (SPEC §11): one listener per listen address, each connection
 * matched by its source IP to a forward and piped to the VM, optionally behind a
 * PROXY protocol header (v1 text or v2 binary). Half-closes are passed on
 * (allowHalfOpen both sides), `relay` gives backpressure both ways (reads stop
 * while a write is unfinished), and a connection with no traffic for
 * `idleTimeoutMs` ends.
 *
 * `apply` swaps the whole set of forwards: listeners no longer named close with
 * their connections, new ones open, kept ones keep every connection whose source
 * still goes to the same place. Counts are read from the live sets, never kept
 * with +1/-1, so they cannot drift.
 */
import net, { type Server, type Socket } from 'node:net'
import type { Logger } from './log.ts'
import type { ProxyMetrics } from './metrics.ts'
import { createIpMatcher, normalizeIp, type IpMatcher } from './ip-match.ts'
import { createLogThrottle } from './log-throttle.ts'
import { addressKey, mergePortSpecs, parsePortFileText, ruleKey, type TcpForwardRule, type TcpPortSpec } from './port-table.ts'
import { readRouteFile, RouteFileReadError } from './route-file-read.ts'
import type { ListenHandle } from './listen-handle.ts'

export interface TcpForwarderOptions {
  logger: Logger
  metrics: ProxyMetrics
  connectTimeoutMs: number
  /** 0 = never. */
  idleTimeoutMs: number
  /** A listening socket a takeover inherited for `tcp:ADDRESS` (SPEC §12), if any. */
  inherited?: (key: string) => ListenHandle | undefined
}

/** One listen port as the metrics count it. */
export interface TcpPortCount { port: string, connections: number, listening: boolean }

/** One listen address as /status shows it. */
export interface TcpPortStatus {
  listen: string
  from: string
  listening: boolean
  error?: string
  connections: number
  forwards: Array<{ allow: readonly string[], target: string, proxy_protocol: number }>
}

export interface TcpForwarder {
  /**
   * Makes `specs` the running set. Resolves once every new listener is bound or
   * has failed (failures are logged and in `status`; the rest still apply).
   */
  apply (specs: readonly TcpPortSpec[]): Promise<{ failed: string[] }>
  /** Closes every listener (drain); open connections go on. */
  stopAccepting (): void
  openConnections (): number
  /** Ends every connection now. */
  destroyAll (): void
  status (): TcpPortStatus[]
  /** Connections and listening state per listen port (the scrape-time gauges). */
  portCounts (): TcpPortCount[]
  /** The listening sockets by `tcp:ADDRESS`, for a takeover (SPEC §12). */
  handles (): Map<string, ListenHandle>
}

interface CompiledRule {
  rule: TcpForwardRule
  key: string
  matcher: IpMatcher
}

interface Connection {
  readonly source: string
  readonly ruleKey: string
  destroy (): void
}

interface Listener {
  spec: TcpPortSpec
  rules: CompiledRule[]
  readonly server: Server
  readonly port: string
  listening: boolean
  error?: string
  readonly connections: Set<Connection>
}

/** The PROXY protocol v2 signature (12 bytes). */
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a])

/** An address and port as the header names them. */
export interface ProxyEnds {
  srcIp: string
  srcPort: number
  dstIp: string
  dstPort: number
}

function ipv4Bytes (ip: string): number[] {
  return ip.split('.').map(Number)
}

function ipv6Bytes (ip: string): number[] {
  // Expand "::" and a trailing dotted IPv4 part into 16 bytes.
  let text = ip.replace(/%.*$/, '')
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)
  if (v4 !== null) {
    const b = ipv4Bytes(v4[1])
    text = text.slice(0, -v4[1].length) + `${((b[0] << 8) | b[1]).toString(16)}:${((b[2] << 8) | b[3]).toString(16)}`
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined]
  const h = head === '' ? [] : head.split(':')
  const t = tail === undefined || tail === '' ? [] : tail.split(':')
  const groups = tail === undefined ? h : [...h, ...new Array<string>(8 - h.length - t.length).fill('0'), ...t]
  const out: number[] = []
  for (const g of groups) {
    const n = parseInt(g, 16)
    out.push(n >> 8, n & 0xff)
  }
  return out
}

/** Both ends in one family: an IPv4 end beside an IPv6 one is written IPv4-mapped. */
function sameFamily (ends: ProxyEnds): { v6: boolean, src: string, dst: string } {
  const src = normalizeIp(ends.srcIp)
  const dst = normalizeIp(ends.dstIp)
  const v6 = net.isIP(src) === 6 || net.isIP(dst) === 6
  const map = (ip: string): string => (v6 && net.isIP(ip) === 4 ? `::ffff:${ip}` : ip)
  return { v6, src: map(src), dst: map(dst) }
}

/** The PROXY protocol v1 line (`PROXY TCP4 src dst sport dport\r\n`). */
export function proxyHeaderV1 (ends: ProxyEnds): Buffer {
  const { v6, src, dst } = sameFamily(ends)
  return Buffer.from(`PROXY ${v6 ? 'TCP6' : 'TCP4'} ${src} ${dst} ${ends.srcPort} ${ends.dstPort}\r\n`, 'latin1')
}

/** The PROXY protocol v2 binary header (PROXY command, TCP over IPv4 or IPv6). */
export function proxyHeaderV2 (ends: ProxyEnds): Buffer {
  const { v6, src, dst } = sameFamily(ends)
  const addrLen = v6 ? 36 : 12
  const header = Buffer.alloc(16 + addrLen)
  V2_SIGNATURE.copy(header, 0)
  header[12] = 0x21 // version 2, command PROXY
  header[13] = v6 ? 0x21 : 0x11 // AF_INET6 / AF_INET, STREAM
  header.writeUInt16BE(addrLen, 14)
  const bytes = v6 ? [...ipv6Bytes(src), ...ipv6Bytes(dst)] : [...ipv4Bytes(src), ...ipv4Bytes(dst)]
  Buffer.from(bytes).copy(header, 16)
  header.writeUInt16BE(ends.srcPort, 16 + bytes.length)
  header.writeUInt16BE(ends.dstPort, 18 + bytes.length)
  return header
}

function compile (spec: TcpPortSpec): CompiledRule[] {
  return spec.rules.map((rule) => ({ rule, key: ruleKey(rule), matcher: createIpMatcher(rule.allow) }))
}

function match (rules: readonly CompiledRule[], source: string): CompiledRule | undefined {
  for (const r of rules) if (r.matcher.empty || r.matcher.matches(source)) return r
  return undefined
}

function describe (err: unknown): string {
  const e = err as NodeJS.ErrnoException
  return e.code === 'EADDRINUSE'
    ? 'address already in use'
    : e.code === 'EACCES'
      ? 'permission denied (ports under 1024 need CAP_NET_BIND_SERVICE)'
      : e.code === 'EADDRNOTAVAIL' ? 'the address is not on this machine' : String(e.message ?? err)
}

export function createTcpForwarder (options: TcpForwarderOptions): TcpForwarder {
  const { logger, metrics } = options
  const listeners = new Map<string, Listener>()
  const acceptErrors = createLogThrottle(10_000)
  // A dead VM behind a busy port fails every connection: one line per target per 10 s.
  const connectErrors = createLogThrottle(10_000)
  const connectFailed = (listen: string, target: string, msg: string, reason?: string): void => {
    const suppressed = connectErrors.admit(`${listen} ${target}`)
    if (suppressed >= 0) logger.warn(msg, { listen, target, reason, suppressed })
  }
  let accepting = true
  const readBudget = createReadBudget(MAX_LARGE_READS)
  let applying: Promise<unknown> = Promise.resolve()

  /** Per listen port, for the gauges read at scrape time (metrics.ts ScrapeSources.tcpPorts). */
  const portCounts = (): TcpPortCount[] => {
    const byPort = new Map<string, TcpPortCount>()
    for (const l of listeners.values()) {
      const entry = byPort.get(l.port) ?? { port: l.port, connections: 0, listening: true }
      entry.connections += l.connections.size
      entry.listening &&= l.listening
      byPort.set(l.port, entry)
    }
    return [...byPort.values()]
  }

  function onConnection (l: Listener, accepted: Socket): void {
    const source = normalizeIp(accepted.remoteAddress ?? '')
    const found = match(l.rules, source)
    if (found === undefined || !accepting) {
      metrics.tcpConnectionsTotal.inc({ port: l.port, result: 'refused' })
      logger.debug('tcp connection refused: source not allowed', { listen: addressKey(l.spec.listen), source })
      accepted.on('error', () => {})
      accepted.destroy()
      return
    }
    const { rule } = found
    const inward = createRelay(metrics.tcpBytes.labels(l.port, 'in'), metrics.tcpBytesFlushers, readBudget)
    const outward = createRelay(metrics.tcpBytes.labels(l.port, 'out'), metrics.tcpBytesFlushers, readBudget)
    const upstream = net.connect({ host: rule.target.host, port: rule.target.port, allowHalfOpen: true, onread: outward.onread })
    // Neither side is read before 'connect' has started both relays.
    upstream.pause()
    const client = adoptAccepted(accepted, inward.onread)
    let connected = false
    const conn: Connection = {
      source,
      ruleKey: found.key,
      destroy (): void {
        client.destroy()
        upstream.destroy()
      }
    }
    l.connections.add(conn)
    let open = 2
    const closed = (): void => {
      if (--open === 0) l.connections.delete(conn)
    }
    client.on('close', (hadError) => {
      closed()
      // A reset or a timeout on one side ends the other; a clean close only
      // follows both FINs, and the other side finishes on its own.
      if (hadError || !connected) upstream.destroy()
    })
    upstream.on('close', (hadError) => {
      closed()
      if (hadError || !connected) client.destroy()
    })
    client.on('error', () => { upstream.destroy() })
    upstream.on('error', (err) => {
      if (!connected) {
        metrics.tcpConnectionsTotal.inc({ port: l.port, result: 'failed' })
        connectFailed(addressKey(l.spec.listen), addressKey(rule.target), 'tcp forward failed: the VM did not accept the connection', (err as NodeJS.ErrnoException).code ?? err.message)
      }
      client.destroy()
    })
    upstream.setTimeout(options.connectTimeoutMs, () => {
      if (connected) return
      metrics.tcpConnectionsTotal.inc({ port: l.port, result: 'failed' })
      connectFailed(addressKey(l.spec.listen), addressKey(rule.target), 'tcp forward failed: connecting to the VM timed out')
      conn.destroy()
    })
    upstream.once('connect', () => {
      connected = true
      metrics.tcpConnectionsTotal.inc({ port: l.port, result: 'forwarded' })
      upstream.setTimeout(options.idleTimeoutMs)
      // Both sockets count as activity: either direction moving keeps the pair.
      if (options.idleTimeoutMs > 0) {
        const idle = (): void => { conn.destroy() }
        client.setTimeout(options.idleTimeoutMs, idle)
        upstream.removeAllListeners('timeout')
        upstream.on('timeout', idle)
      }
      if (rule.proxyProtocol !== 0) {
        const ends: ProxyEnds = {
          srcIp: client.remoteAddress ?? '',
          srcPort: client.remotePort ?? 0,
          dstIp: client.localAddress ?? '',
          dstPort: rule.headerPort ?? client.localPort ?? 0
        }
        upstream.write(rule.proxyProtocol === 1 ? proxyHeaderV1(ends) : proxyHeaderV2(ends))
      }
      inward.start(client, upstream)
      outward.start(upstream, client)
    })
  }

  function openListener (spec: TcpPortSpec): Promise<Listener> {
    // Paused: an accepted socket is read only once it has its relay (adoptAccepted).
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true })
    const l: Listener = { spec, rules: compile(spec), server, port: String(spec.listen.port), listening: false, connections: new Set() }
    server.on('connection', (socket) => { onConnection(l, socket) })
    return new Promise((resolve) => {
      const failed = (err: Error): void => {
        l.error = describe(err)
        logger.error('tcp forward port cannot be bound: the other ports still apply', { listen: addressKey(spec.listen), from: spec.from, reason: l.error })
        resolve(l)
      }
      server.once('error', failed)
      // A takeover inherits the previous process's socket for this address: its queue goes on.
      const inherited = options.inherited?.(`tcp:${addressKey(spec.listen)}`)
      const onListening = (): void => {
        server.off('error', failed)
        l.listening = true
        // An accept error (EMFILE...) is reported and the listener goes on:
        // mulch-proxy dereferenced the nil connection it got back.
        server.on('error', (err: NodeJS.ErrnoException) => {
          const suppressed = acceptErrors.admit(addressKey(spec.listen))
          if (suppressed >= 0) logger.error('tcp forward port: accepting a connection failed', { listen: addressKey(spec.listen), reason: err.code ?? err.message, suppressed })
        })
        resolve(l)
      }
      if (inherited !== undefined) server.listen(inherited, onListening)
      else server.listen({ host: spec.listen.host === '' ? undefined : spec.listen.host, port: spec.listen.port }, onListening)
    })
  }

  function closeListener (l: Listener): void {
    if (l.listening) l.server.close()
    for (const c of l.connections) c.destroy()
  }

  async function applyNow (specs: readonly TcpPortSpec[]): Promise<{ failed: string[] }> {
    const wanted = new Map(specs.map((s) => [addressKey(s.listen), s]))
    // Closed first: a port moving between addresses must be free to bind again.
    for (const [key, l] of listeners) {
      if (wanted.has(key) && l.listening) continue
      closeListener(l)
      listeners.delete(key)
      if (l.listening) logger.info('tcp forward port closed', { listen: key, cut_connections: l.connections.size })
    }
    for (const [key, l] of listeners) {
      const spec = wanted.get(key)!
      l.spec = spec
      l.rules = compile(spec)
      for (const c of l.connections) {
        if (match(l.rules, c.source)?.key !== c.ruleKey) c.destroy()
      }
    }
    const opened = await Promise.all(specs.filter((s) => !listeners.has(addressKey(s.listen))).map(openListener))
    const failed: string[] = []
    for (const l of opened) {
      const key = addressKey(l.spec.listen)
      listeners.set(key, l)
      if (l.listening) logger.info('tcp forward port open', { listen: key, from: l.spec.from, forwards: l.spec.rules.map((r) => addressKey(r.target)) })
      else failed.push(key)
    }
    return { failed }
  }

  return {
    apply (specs) {
      const run = applying.then(() => applyNow(specs))
      applying = run.catch(() => {})
      return run
    },
    stopAccepting () {
      accepting = false
      for (const l of listeners.values()) if (l.listening) l.server.close()
    },
    openConnections () {
      let n = 0
      for (const l of listeners.values()) n += l.connections.size
      return n
    },
    destroyAll () {
      for (const l of listeners.values()) for (const c of l.connections) c.destroy()
    },
    handles () {
      const out = new Map<string, ListenHandle>()
      for (const [key, l] of listeners) {
        const handle = (l.server as unknown as { _handle?: ListenHandle | null })._handle
        if (l.listening && handle != null) out.set(`tcp:${key}`, handle)
      }
      return out
    },
    portCounts,
    status () {
      return [...listeners.entries()].map(([key, l]) => ({
        listen: key,
        from: l.spec.from,
        listening: l.listening,
        ...(l.error !== undefined ? { error: l.error } : {}),
        connections: l.connections.size,
        forwards: l.spec.rules.map((r) => ({ allow: r.allow, target: addressKey(r.target), proxy_protocol: r.proxyProtocol }))
      }))
    }
  }
}

export interface PortReloaderOptions {
  /** Mulch's port file; "" = none. */
  file: string
  forwarder: TcpForwarder
  logger: Logger
  /** Reads a file (default: the route file reader, regular files only, size-capped). */
  readFile?: (file: string) => Promise<string>
}

/**
 * Loads the port file and the route table's `ports`, all or nothing: a port file
 * that does not parse, or two sources on one address, keeps every running forward.
 * A missing port file is an empty one (mulch-proxy's reading).
 */
export function createPortReloader (options: PortReloaderOptions): { reload (routePorts: readonly TcpPortSpec[] | undefined): Promise<boolean> } {
  const { logger, forwarder } = options
  const read = options.readFile ?? readRouteFile
  // One reload at a time, and a burst coalesces into one more: two reads racing
  // could otherwise apply an older file last.
  let tail: Promise<boolean> = Promise.resolve(true)
  let pending: Promise<boolean> | undefined
  let latest: readonly TcpPortSpec[] | undefined
  return {
    reload (routePorts) {
      latest = routePorts
      if (pending !== undefined) return pending
      const next = tail.then(() => {
        pending = undefined
        return once(latest)
      })
      pending = next
      tail = next.catch(() => false)
      return next
    }
  }

  async function once (routePorts: readonly TcpPortSpec[] | undefined): Promise<boolean> {
    let fromFile: TcpPortSpec[] = []
    if (options.file !== '') {
      let text: string | undefined
      try {
        text = await read(options.file)
      } catch (err) {
        if (!(err instanceof RouteFileReadError && err.missing)) {
          logger.error('port file reload failed: keeping every running forward', { file: options.file, problem: (err as Error).message })
          return false
        }
      }
      if (text !== undefined) {
        const parsed = parsePortFileText(text)
        if (!parsed.ok) {
          for (const p of parsed.problems.slice(0, 20)) logger.error('port file reload failed: keeping every running forward', { file: options.file, path: p.path, problem: p.message })
          return false
        }
        fromFile = parsed.specs
      }
    }
    const merged = mergePortSpecs(fromFile, routePorts ?? [])
    if (merged.problems.length > 0) {
      for (const p of merged.problems) logger.error('tcp forwards conflict: keeping every running forward', { file: options.file, path: p.path, problem: p.message })
      return false
    }
    await forwarder.apply(merged.specs)
    return true
  }
}

/** What a quiet connection reads into, per direction: interactive traffic fits. */
const SMALL_READ = 4 * 1024
/** What a busy direction reads into: fewer, larger reads and writes for bulk data. */
const LARGE_READ = 256 * 1024
/**
 * Large buffers held at once by one forwarder's connections (16 MiB). A connection
 * keeps the buffer its next read goes to even while quiet, so without a bound many
 * connections that each sent one full small buffer would hold 256 KiB apiece; past
 * the bound a direction reads 4 KiB at a time (slower, as correct).
 */
const MAX_LARGE_READS = 64

/** Counts the large read buffers held across one forwarder's connections. */
interface ReadBudget {
  take (): boolean
  give (): void
}

function createReadBudget (max: number): ReadBudget {
  let held = 0
  return {
    take () {
      if (held >= max) return false
      held++
      return true
    },
    give () { held-- }
  }
}

type OnRead = { buffer: () => Buffer, callback: (nread: number, buf: Buffer) => boolean }

interface Relay {
  /** The `onread` option of the socket this relay reads from. */
  readonly onread: OnRead
  /** Starts copying `from` into `to` (both sockets exist and are connected). */
  start (from: Socket, to: Socket): void
}

/**
 * Copies one direction with backpressure: reads stop while a write is unfinished
 * (the kernel did not take it all) and resume once `to` has flushed it, so at most
 * one read buffer per direction waits in the proxy. `from`'s end (a half-close)
 * ends `to` while the other direction keeps flowing.
 *
 * Reads land in this relay's own buffers (`onread`), not in a fresh 64 KiB buffer
 * per read: those allocations grow V8's external memory by the size of the data, and
 * every 64 MiB of it forces a full garbage collection of the whole proxy heap (half of
 * vmfront's CPU in a 1 GiB transfer went to it). A direction reads into a 4 KiB buffer
 * while quiet and a 256 KiB one (from `budget`) once a read fills the small one; the
 * large one is dropped at the first read that the small one would have held (a write
 * still holding it keeps it alive until done).
 * Reusing a buffer is safe because nothing is read while a write of it is unfinished.
 *
 * Bytes are added to `counter` when a scrape asks (`flushers`) and at the end, not per
 * read: a read costs one addition here, not a metric update.
 */
function createRelay (counter: { inc (n: number): void }, flushers: Set<() => void>, budget: ReadBudget): Relay {
  const small = Buffer.allocUnsafe(SMALL_READ)
  let next = small
  let holdsLarge = false
  let from: Socket | undefined
  let to: Socket | undefined
  let waiting = false
  let uncounted = 0
  const flush = (): void => {
    if (uncounted > 0) counter.inc(uncounted)
    uncounted = 0
  }
  const written = (): void => {
    if (waiting && to!.writableLength === 0) {
      waiting = false
      from!.resume()
    }
  }
  /** Writes one chunk; false = stop reading until `written` resumes. */
  const deliver = (chunk: Buffer): boolean => {
    uncounted += chunk.length
    to!.write(chunk, written)
    if (to!.writableLength === 0) return true
    waiting = true
    from!.pause()
    return false
  }
  return {
    onread: {
      buffer: () => next,
      callback (nread, buf) {
        if (!holdsLarge && nread === buf.length && budget.take()) {
          holdsLarge = true
          next = Buffer.allocUnsafe(LARGE_READ)
        } else if (holdsLarge && nread <= SMALL_READ) {
          holdsLarge = false
          budget.give()
          next = small
        }
        return deliver(buf.subarray(0, nread))
      }
    },
    start (f, t) {
      from = f
      to = t
      flushers.add(flush)
      // A socket Node would not let us read into our buffers emits its own chunks.
      f.on('data', deliver)
      f.once('end', () => {
        flush()
        if (!t.destroyed) t.end()
      })
      f.once('close', () => {
        flush()
        flushers.delete(flush)
        if (holdsLarge) budget.give()
        holdsLarge = false
      })
      f.resume()
    }
  }
}

/**
 * The accepted socket, taken over by a socket that reads into `onread`'s buffers.
 * Node passes `onread` only to sockets it connects, not to the ones a server
 * accepts, so the accepted socket's handle (paused since the accept) moves to a new
 * socket built with it, as Node itself does for handles it receives from another
 * process. Where this Node has no such handle, the accepted socket is kept and its
 * reads come as 'data' chunks (slower, as correct).
 */
function adoptAccepted (accepted: Socket, onread: OnRead): Socket {
  const internal = accepted as unknown as { _handle?: { useUserBuffer?: unknown } | null }
  const handle = internal._handle
  if (handle === undefined || handle === null || typeof handle.useUserBuffer !== 'function') return accepted
  internal._handle = null
  // Only the server's count of connections goes with it: the handle lives on.
  accepted.destroy()
  return new net.Socket({ handle, allowHalfOpen: true, pauseOnCreate: true, onread } as unknown as net.SocketConstructorOpts)
}
