/**
 * @module proxy/server
 * The client-facing listeners: plain HTTP/1.1, and HTTPS with HTTP/2 and HTTP/1.1
 * by ALPN. Strict parsing and client timeouts are set here; connections and
 * upgraded sockets are tracked so a shutdown can drain them.
 */
import http from 'node:http'
import http2 from 'node:http2'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { SecureContext } from 'node:tls'
import type { ClientRequest, ClientResponse } from './forward.ts'
import type { ErrorPages } from './error-pages.ts'
import type { ListenAddress } from './config-schema.ts'
import { UNKNOWN_DOMAIN, type ProxyMetrics } from './metrics.ts'
import type { Logger } from './log.ts'
import { guardHttp2Sessions, H2_GUARD_DEFAULTS, H2_MAX_CONCURRENT_STREAMS, type H2Guard } from './h2-guard.ts'
import { TLS_SERVER_POLICY } from './tls-policy.ts'
import { createLogThrottle } from './log-throttle.ts'

export interface ListenerOptions {
  requestHeadersMs: number
  clientIdleMs: number
  maxHeaderBytes: number
  maxRequestsPerConnection: number
}

export interface TlsOptions {
  key: string | Buffer
  cert: string | Buffer
  SNICallback: (servername: string, cb: (err: Error | null, ctx?: SecureContext) => void) => void
}

/** A listener that knows its sockets, so it can be drained. */
export interface ManagedListener {
  readonly name: string
  readonly server: http.Server | http2.Http2SecureServer
  listen (address: ListenAddress): Promise<number>
  /** Stops accepting; closes idle keep-alive connections. */
  stopAccepting (): void
  /** Closes connections with no request in flight (call repeatedly while draining). */
  closeIdle (): void
  /** Open client connections (upgraded sockets included). */
  openSockets (): number
  /** Ends every remaining socket. */
  destroyAll (): void
}

type Handler = (req: ClientRequest, res: ClientResponse) => void
type UpgradeHandler = (req: http.IncomingMessage, socket: Duplex, head: Buffer) => void

const CLIENT_ERROR_STATUS: Record<string, number> = {
  HPE_HEADER_OVERFLOW: 431,
  ERR_HTTP_REQUEST_TIMEOUT: 408,
  HPE_HEADERS_TIMEOUT: 408
}

function trackSockets (name: string, server: http.Server | http2.Http2SecureServer, metrics: ProxyMetrics, pages: ErrorPages, logger: Logger, upgraded: Set<Duplex>): { sockets: Set<Socket> } {
  const sockets = new Set<Socket>()
  const onConnection = (socket: Socket): void => {
    sockets.add(socket)
    metrics.openConnections.value++
    socket.once('close', () => {
      sockets.delete(socket)
      metrics.openConnections.value--
    })
  }
  server.on(name === 'https' ? 'secureConnection' : 'connection', onConnection)
  // Bad framing (CL+TE, invalid chunking, bad tokens), oversized headers and slow
  // header delivery end here: answer with a status if we still can, and close.
  server.on('clientError', (err: Error & { code?: string }, socket: Duplex) => {
    const status = CLIENT_ERROR_STATUS[err.code ?? ''] ?? 400
    if (err.code !== 'ECONNRESET' && err.code !== 'EPIPE') metrics.domain(UNKNOWN_DOMAIN).record(status, 'OTHER', 0)
    if (err.code !== 'ECONNRESET' && err.code !== 'EPIPE') logger.debug('client error', { listener: name, code: err.code, status })
    // Like Node's default: answer unless a response already started on this socket.
    const pending = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage
    if (socket.writable && (pending === undefined || pending === null || pending.headersSent !== true)) {
      const body = pages.body(status)
      socket.end(`HTTP/1.1 ${status} ${pages.reason(status)}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body.toString()}`)
    }
    socket.destroy()
  })
  return { sockets }
}

/**
 * Creates a listener. With `tls`, an HTTP/2 secure server that also speaks
 * HTTP/1.1 (ALPN), else a plain HTTP/1.1 server.
 */
export function createListener (
  name: 'http' | 'https',
  options: ListenerOptions,
  handler: Handler,
  upgrade: UpgradeHandler,
  deps: { metrics: ProxyMetrics, errorPages: ErrorPages, logger: Logger },
  tls?: TlsOptions
): ManagedListener {
  const upgraded = new Set<Duplex>()
  const onUpgrade: UpgradeHandler = (req, socket, head) => {
    upgraded.add(socket)
    socket.once('close', () => upgraded.delete(socket))
    upgrade(req, socket, head)
  }
  let server: http.Server | http2.Http2SecureServer
  let h2: H2Guard | undefined
  if (tls === undefined) {
    server = http.createServer({
      headersTimeout: options.requestHeadersMs,
      requestTimeout: 0,
      keepAliveTimeout: options.clientIdleMs,
      maxHeaderSize: options.maxHeaderBytes,
      insecureHTTPParser: false,
      requireHostHeader: true,
      connectionsCheckingInterval: Math.min(1000, options.requestHeadersMs),
      noDelay: true
    }, handler as http.RequestListener)
    ;(server as http.Server).maxRequestsPerSocket = options.maxRequestsPerConnection
  } else {
    const secure = http2.createSecureServer({
      allowHTTP1: true,
      key: tls.key,
      cert: tls.cert,
      SNICallback: tls.SNICallback,
      ...TLS_SERVER_POLICY,
      maxSessionMemory: 64,
      // Bounded streams per client connection; a TLS handshake may not outlast the header timeout.
      settings: { maxHeaderListSize: options.maxHeaderBytes, maxConcurrentStreams: H2_MAX_CONCURRENT_STREAMS },
      handshakeTimeout: options.requestHeadersMs,
      // HTTP/1.1 over TLS shares the plain listener's parser limits.
      maxHeaderSize: options.maxHeaderBytes,
      headersTimeout: options.requestHeadersMs,
      requestTimeout: 0,
      keepAliveTimeout: options.clientIdleMs
    } as http2.SecureServerOptions)
    const abuseLog = createLogThrottle(1000)
    h2 = guardHttp2Sessions(secure, {
      ...H2_GUARD_DEFAULTS,
      onAbusive (reason, remoteAddress) {
        deps.metrics.http2AbusiveConnections.inc({ reason })
        const suppressed = abuseLog.admit(reason)
        if (suppressed >= 0) deps.logger.warn('abusive HTTP/2 connection closed', { listener: name, reason, client: remoteAddress, ...(suppressed > 0 ? { suppressed } : {}) })
      }
    })
    secure.on('request', h2.dispatch(handler))
    server = secure
    server.setTimeout(options.clientIdleMs * 5)
  }
  server.on('upgrade', onUpgrade)
  const { sockets } = trackSockets(name, server, deps.metrics, deps.errorPages, deps.logger, upgraded)

  return {
    name,
    server,
    listen (address: ListenAddress): Promise<number> {
      return new Promise((resolve, reject) => {
        server.once('error', reject)
        server.listen({ host: address.host, port: address.port, backlog: 4096 }, () => {
          server.off('error', reject)
          const info = server.address()
          resolve(typeof info === 'object' && info !== null ? info.port : address.port)
        })
      })
    },
    stopAccepting (): void {
      server.close()
      ;(server as http.Server).closeIdleConnections?.()
      // Every client HTTP/2 session learns at once that it may open no more streams.
      h2?.goawayAll()
    },
    closeIdle (): void {
      (server as http.Server).closeIdleConnections?.()
      h2?.sweep()
    },
    openSockets: () => sockets.size + upgraded.size,
    destroyAll (): void {
      for (const socket of upgraded) socket.destroy()
      for (const socket of sockets) socket.destroy()
    }
  }
}
