/**
 * @module proxy/websocket
 * WebSocket (and other HTTP/1.1 Upgrade) forwarding through http-proxy-3: the
 * client's upgrade request goes to the VM with our forwarding headers, then the
 * two sockets are piped until either side closes. The handshake (connect and the
 * VM's answer) is bounded by `timeouts.upstream_response`, and it ends with the
 * client: http-proxy-3 itself bounds neither, nor aborts the upstream request when
 * the client leaves before the VM has answered.
 */
import type { ClientRequest, IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { createProxyServer } from 'http-proxy-3'
import type { Socket } from 'node:net'
import { classifyUpstreamError } from './forward.ts'
import type { ClientInfo, ForwardStats, UpstreamFailure } from './http-types.ts'
import { FORWARDING_HEADERS, CHAIN_CREDENTIAL_HEADERS } from './headers.ts'
import { DeadlineQueue } from './deadline-queue.ts'
import type { Deadline } from './deadline-queue.ts'
import { ProxyError } from './errors.ts'

/** Per-upgrade extras: headers a chain hop adds after the strip, and where the access log's figures go. */
export interface UpgradeOptions {
  readonly extraHeaders?: Readonly<Record<string, string>>
  readonly stats?: ForwardStats
}

export interface WebSocketProxy {
  /**
   * Forwards an upgrade request. `done` is called once: with a failure when the VM
   * could not be reached in time (a 502/504 was written to the socket) or the client
   * left during the handshake (499), or without one when the tunnel closes (101, or
   * the VM's status when it answered the upgrade with a plain response).
   */
  upgrade (req: IncomingMessage, socket: Duplex, head: Buffer, origin: string, client: ClientInfo, done: (status: number, failure?: UpstreamFailure) => void, options?: UpgradeOptions): void
  close (): void
}

export interface WebSocketProxyOptions {
  /** Unused here: http-proxy-3 has no connect timeout for upgrades; `responseTimeoutMs` bounds connect and answer together. */
  connectTimeoutMs: number
  /** Silence after which an open tunnel is closed; 0 = never. */
  idleTimeoutMs: number
  /** Connect plus the VM's answer to the upgrade (504 when exceeded); default 60 s, as `timeouts.upstream_response`. */
  responseTimeoutMs?: number
}

/** One upgrade until the VM has answered (or failed), then until the tunnel closes. */
class Handshake {
  private readonly socket: Duplex
  private readonly done: (status: number, failure?: UpstreamFailure) => void
  /** The access log's time to the VM's answer. */
  private readonly stats: ForwardStats | undefined
  private readonly deadlines: DeadlineQueue
  private deadline: Deadline | undefined = undefined
  private proxyReq: ClientRequest | undefined = undefined
  /** The VM's answer: 101, or the status of the plain response it sent instead. */
  private answered: number | undefined = undefined
  private upstreamSocket: Socket | undefined = undefined
  private settled = false

  /** What the client sent before the VM answered, handed back to the tunnel after the 101. */
  private early: Buffer[] = []
  private earlyBytes = 0
  private readonly onEarlyData = (chunk: Buffer): void => {
    this.earlyBytes += chunk.length
    // A WebSocket client waits for the 101 before it sends frames.
    if (this.earlyBytes > MAX_EARLY_BYTES) this.socket.destroy()
    else this.early.push(chunk)
  }

  // A client that no longer waits (FIN) during the handshake has left.
  private readonly onEarlyEnd = (): void => { this.socket.destroy() }

  constructor (socket: Duplex, deadlines: DeadlineQueue, done: (status: number, failure?: UpstreamFailure) => void, stats: ForwardStats | undefined) {
    this.socket = socket
    this.stats = stats
    this.deadlines = deadlines
    this.done = done
    this.deadline = deadlines.start(onHandshakeDeadline, this)
    socket.once('close', () => { this.clientClosed() })
    // A paused socket never learns that its peer left: read while waiting for the VM.
    socket.on('data', this.onEarlyData)
    socket.once('end', this.onEarlyEnd)
  }

  /** Stops watching the client; what it sent early goes back in front of the stream. */
  private stopWatching (): void {
    this.socket.off('data', this.onEarlyData)
    this.socket.off('end', this.onEarlyEnd)
    this.socket.pause()
    if (this.early.length > 0) this.socket.unshift(Buffer.concat(this.early))
    this.early = []
  }

  /** http-proxy-3 created the upstream request (synchronously, inside `ws()`). */
  attach (proxyReq: ClientRequest): void {
    this.proxyReq = proxyReq
    // Registered before http-proxy-3's own listeners, so these run first.
    proxyReq.once('upgrade', (_res: IncomingMessage, upstream: Socket) => {
      this.answer(101)
      this.stopWatching()
      this.upstreamSocket = upstream
      // The client left while the 101 was on its way: nothing will pipe this socket.
      if (this.socket.destroyed) upstream.destroy()
    })
    proxyReq.once('response', (res: IncomingMessage) => { this.answer(res.statusCode ?? 502) })
  }

  /** After `ws()`: no upstream request means http-proxy-3 refused the upgrade (not a WebSocket) and closed the socket. */
  started (): void {
    if (this.proxyReq === undefined) this.settle(400)
  }

  private answer (status: number): void {
    this.answered = status
    if (this.stats !== undefined) this.stats.headersAt = performance.now()
    this.deadlines.cancel(this.deadline)
    this.deadline = undefined
  }

  private settle (status: number, failure?: UpstreamFailure): void {
    if (this.settled) return
    this.settled = true
    this.deadlines.cancel(this.deadline)
    this.deadline = undefined
    this.done(status, failure)
  }

  private clientClosed (): void {
    if (this.answered !== undefined) {
      // http-proxy-3 only ends (FIN) the upstream side; a VM that never closes its end would keep it.
      this.upstreamSocket?.destroy()
      this.settle(this.answered)
      return
    }
    this.settle(499, 'client_abort')
    this.proxyReq?.destroy()
  }

  timedOut (): void {
    this.deadline = undefined
    if (this.answered !== undefined || this.settled) return
    // The request's 'error' reaches `failed` through http-proxy-3's callback.
    const err = new ProxyError('PROXY_UPSTREAM_TIMEOUT', 'no answer to the WebSocket upgrade within timeouts.upstream_response', { status: 504 })
    if (this.proxyReq !== undefined) this.proxyReq.destroy(err)
    else this.failed(err)
  }

  /** http-proxy-3 reports an upstream error (before or after the upgrade). */
  failed (err: Error & { code?: string }): void {
    if (this.answered !== undefined) {
      // A tunnel or a relayed response broke: a status line now would corrupt the stream.
      this.socket.destroy()
      return
    }
    const { status, failure } = classifyUpstreamError(err)
    if (this.socket.writable) {
      this.socket.end(`HTTP/1.1 ${status} ${status === 504 ? 'Gateway Timeout' : 'Bad Gateway'}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`)
    }
    this.settle(status, failure)
  }
}

/** More than this from a client before the VM's 101 closes the client. */
const MAX_EARLY_BYTES = 64 * 1024

function onHandshakeDeadline (handshake: Handshake): void {
  handshake.timedOut()
}

export function createWebSocketProxy (options: WebSocketProxyOptions): WebSocketProxy {
  const proxy = createProxyServer({ ws: true, xfwd: false, prependPath: false })
  const deadlines = new DeadlineQueue(options.responseTimeoutMs ?? 60_000)
  // The handshake whose `ws()` call is running: http-proxy-3 emits proxyReqWs synchronously.
  const starting = new WeakMap<IncomingMessage, Handshake>()
  proxy.on('proxyReqWs', (proxyReq: ClientRequest, req: IncomingMessage) => { starting.get(req)?.attach(proxyReq) })
  // Errors are handled per call; this keeps an unhandled 'error' from throwing.
  proxy.on('error', () => {})
  return {
    upgrade (req, socket, head, origin, client, done, extras): void {
      for (const name of Object.keys(req.headers)) {
        if (FORWARDING_HEADERS.has(name) || CHAIN_CREDENTIAL_HEADERS.has(name)) delete req.headers[name]
      }
      req.headers['x-forwarded-for'] = client.forwardedFor
      req.headers['x-forwarded-proto'] = client.proto
      req.headers['x-forwarded-host'] = client.forwardedHost
      req.headers['x-real-ip'] = client.clientIp
      req.headers['x-request-id'] = client.requestId
      // After the strip: a chain hop's own credential (a Mulch child's Mulch-PSK).
      if (extras?.extraHeaders !== undefined) Object.assign(req.headers, extras.extraHeaders)
      const handshake = new Handshake(socket, deadlines, done, extras?.stats)
      starting.set(req, handshake)
      try {
        proxy.ws(req, socket, head, { target: origin }, (err) => { handshake.failed(err as Error & { code?: string }) })
      } finally {
        starting.delete(req)
      }
      handshake.started()
      // After ws(): http-proxy-3 clears the client socket's timeout when it sets the socket up.
      if (options.idleTimeoutMs > 0) (socket as Socket).setTimeout?.(options.idleTimeoutMs, () => { socket.destroy() })
    },
    close (): void {
      deadlines.close()
      proxy.close()
    }
  }
}
