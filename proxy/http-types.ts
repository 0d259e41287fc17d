/**
 * @module proxy/http-types
 * The request and response shapes every part of the HTTP path shares (the
 * listeners, the handler, the forwarders, the chain, the access log), in one
 * module that imports nothing of the proxy: a part that needs them does not
 * depend on the part that happens to produce them.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2'

/** A client's request, over HTTP/1.1 or HTTP/2. */
export type ClientRequest = IncomingMessage | Http2ServerRequest
export type ClientResponse = ServerResponse | Http2ServerResponse

/** Why a forward failed, as counted in `vmfront_upstream_errors_total{reason}`. */
export type UpstreamFailure = 'refused' | 'connect_timeout' | 'timeout' | 'reset' | 'dns' | 'protocol' | 'client_abort'

/** Outcome of a forward, reported once. */
export interface ForwardOutcome {
  status: number
  failure?: UpstreamFailure
  error?: Error
}

/**
 * What a forward reports for the access log, written into an object the caller
 * already has for the request (no allocation per request here).
 */
export interface ForwardStats {
  /** performance.now() when the VM's response head arrived (0: never). */
  headersAt: number
  /** Response body bytes written to the client. */
  bytesOut: number
}

/** What the forwarding hop knows about the client side of a request. */
export interface ClientInfo {
  /** The real client IP (after trusted X-Forwarded-For). */
  clientIp: string
  /** The X-Forwarded-For value to send on. */
  forwardedFor: string
  /** The scheme the client used at the edge ("http" | "https"). */
  proto: string
  /** The host the client asked for at the edge. */
  forwardedHost: string
  /** The X-Request-Id sent on (kept from a trusted front, else generated). */
  requestId: string
}

/**
 * Which HTTP/1.1 upgrade requests the upgrade handler takes (the listener's
 * `shouldUpgradeCallback`): WebSocket handshakes. Any other Upgrade (`h2c` from
 * `curl --http2`, ...) is served as an ordinary request, the Upgrade header dropped
 * as hop-by-hop (RFC 9110 §7.8: a server may ignore it), instead of a cut socket.
 */
export function isWebSocketUpgrade (req: IncomingMessage): boolean {
  const upgrade = req.headers.upgrade
  return req.method === 'GET' && upgrade !== undefined && upgrade.toLowerCase().includes('websocket')
}
