/**
 * @module proxy/server
 * The client-facing listeners: plain HTTP/1.1, and HTTPS with HTTP/2 and HTTP/1.1
 * by ALPN. Strict parsing and client timeouts are set here; connections and
 * upgraded sockets are tracked so a shutdown can drain them.
 */
import type http from 'node:http'
import http2 from 'node:http2'
import { Server as NetServer, type Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { SecureContext } from 'node:tls'
import { isWebSocketUpgrade, type ClientRequest, type ClientResponse } from './http-types.ts'
import type { ErrorPages } from './error-pages.ts'
import type { ListenAddress } from './config-schema.ts'
import type { ProxyMetrics } from './metrics.ts'
import { createClientErrorHandler, createConnectHandler } from './client-errors.ts'
import type { Logger } from './log.ts'
import { guardHttp2Sessions, H2_GUARD_DEFAULTS, H2_MAX_CONCURRENT_STREAMS, type H2Guard } from './h2-guard.ts'
import { TLS_SERVER_POLICY } from './tls-policy.ts'
import { createLogThrottle } from './log-throttle.ts'
import { listenOnHandle, type ListenHandle } from './listen-handle.ts'

// node:http by process.getBuiltinModule, not an ESM import: importing it makes Node build
// its ESM namespace, which loads Node's bundled undici for http.WebSocket (3.4 MiB in a worker).
const { createServer: createHttpServer } = process.getBuiltinModule('node:http')

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
  /** Serves a socket bound by another process (a worker's, or a takeover's). */
  listenHandle (handle: ListenHandle): Promise<number>
  /**
   * Stops accepting; closes idle keep-alive connections, or with `keepIdle` (a
   * takeover: another process serves the socket now) leaves them open a moment so
   * that a client's next request is answered, with `Connection: close`, instead of
   * racing a close (a reset for a request already on its way).
   */
  stopAccepting (options?: { keepIdle?: boolean }): void
  /**
   * Stops accepting new connections but keeps serving the open ones (a listener
   * moved to a new address, SPEC §12): a client mid-exchange on them must not
   * fail. Keep-alive connections end by their idle timeout, HTTP/2 clients get a
   * GOAWAY; call `closeIdle`/`destroyAll` to finish.
   */
  stopListening (): void
  /** Closes connections with no request in flight (call repeatedly while draining). */
  closeIdle (): void
  /** Open client connections (upgraded sockets included). */
  openSockets (): number
  /** Ends every remaining socket. */
  destroyAll (): void
  /**
   * Applies new timeouts and limits (a SIGHUP): to connections accepted from now
   * on (and, where Node reads them per request, to open ones too).
   */
  configure (options: ListenerOptions): void
}

type Handler = (req: ClientRequest, res: ClientResponse) => void
type UpgradeHandler = (req: http.IncomingMessage, socket: Duplex, head: Buffer) => void

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
  // Bad framing, an unsupported version, oversized headers and slow header delivery
  // end here (answered and counted once); CONNECT gets 405 (client-errors.ts).
  server.on('clientError', createClientErrorHandler(name, metrics, pages, logger))
  server.on('connect', createConnectHandler(metrics, pages))
  // Only WebSocket handshakes go to the upgrade handler; other upgrades are requests.
  ;(server as { shouldUpgradeCallback?: (req: http.IncomingMessage) => boolean }).shouldUpgradeCallback = isWebSocketUpgrade
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
  // Draining: every HTTP/1.1 response ends its connection (HTTP/2 sessions get GOAWAY).
  let draining = false
  const onRequest: Handler = (req, res) => {
    if (draining && (res as http.ServerResponse).shouldKeepAlive === true) (res as http.ServerResponse).shouldKeepAlive = false
    handler(req, res)
  }
  if (tls === undefined) {
    server = createHttpServer({
      headersTimeout: options.requestHeadersMs,
      requestTimeout: 0,
      keepAliveTimeout: options.clientIdleMs,
      maxHeaderSize: options.maxHeaderBytes,
      insecureHTTPParser: false,
      requireHostHeader: true,
      connectionsCheckingInterval: Math.min(1000, options.requestHeadersMs),
      noDelay: true
    }, onRequest as http.RequestListener)
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
    secure.on('request', h2.dispatch(onRequest))
    server = secure
    server.setTimeout(options.clientIdleMs * 5)
  }
  server.on('upgrade', onUpgrade)
  const { sockets } = trackSockets(name, server, deps.metrics, deps.errorPages, deps.logger, upgraded)

  return {
    name,
    server,
    listen (address: ListenAddress): Promise<number> {
      return listenOn(server, address, deps.logger, name)
    },
    stopListening (): void {
      // net.Server's own close: http.Server.close would also cut idle keep-alive
      // connections, racing a client that is sending its next request on one.
      // The keep-alive timeout is left as it is: a client told to close sooner
      // (Keep-Alive: timeout=1) reconnects to this address before it learns the new one.
      if (server.listening) NetServer.prototype.close.call(server)
      h2?.goawayAll()
    },
    listenHandle (handle: ListenHandle): Promise<number> {
      return listenOnHandle(server, handle)
    },
    stopAccepting (options = {}): void {
      draining = true
      if (options.keepIdle === true) {
        // net.Server's close stops accepting only; http.Server's also closes idle connections.
        NetServer.prototype.close.call(server)
      } else {
        server.close()
        ;(server as http.Server).closeIdleConnections?.()
      }
      // Every client HTTP/2 session learns at once that it may open no more streams.
      h2?.goawayAll()
    },
    closeIdle (): void {
      (server as http.Server).closeIdleConnections?.()
      h2?.sweep()
    },
    openSockets: () => sockets.size + upgraded.size,
    configure (next: ListenerOptions): void {
      // Node reads these server fields when a connection or request starts.
      const s = server as http.Server & { maxHeaderSize?: number }
      s.headersTimeout = next.requestHeadersMs
      s.keepAliveTimeout = next.clientIdleMs
      s.maxHeaderSize = next.maxHeaderBytes
      if (tls === undefined) s.maxRequestsPerSocket = next.maxRequestsPerConnection
      else {
        (server as http2.Http2SecureServer).updateSettings({ maxHeaderListSize: next.maxHeaderBytes, maxConcurrentStreams: H2_MAX_CONCURRENT_STREAMS })
        server.setTimeout(next.clientIdleMs * 5)
      }
    },
    destroyAll (): void {
      for (const socket of upgraded) socket.destroy()
      for (const socket of sockets) socket.destroy()
    }
  }
}

function listenOnce (server: NetServer, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    // ipv6Only false: "::" takes IPv4 clients too (as ::ffff:a.b.c.d, which ip-match normalizes).
    server.listen({ host, port, backlog: 4096, ipv6Only: false }, () => {
      server.off('error', reject)
      const info = server.address()
      resolve(typeof info === 'object' && info !== null ? info.port : port)
    })
  })
}

/** Errors of binding "::" on a host whose kernel has IPv6 off or absent. */
const NO_IPV6 = new Set(['EAFNOSUPPORT', 'EADDRNOTAVAIL', 'EPROTONOSUPPORT'])

/**
 * Binds `server` to `address`. ":port" (anyHost) binds "::" dual stack, so IPv6
 * and IPv4 clients both reach it; on a host without IPv6 it binds 0.0.0.0 and says so.
 */
export async function listenOn (server: NetServer, address: ListenAddress, logger: Logger, name: string): Promise<number> {
  try {
    return await listenOnce(server, address.host, address.port)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? ''
    if (address.anyHost !== true || !NO_IPV6.has(code)) throw err
    logger.warn('no IPv6 on this host: listening on IPv4 only', { listener: name, port: address.port, reason: code })
    return await listenOnce(server, '0.0.0.0', address.port)
  }
}
