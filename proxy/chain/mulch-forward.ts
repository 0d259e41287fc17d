/**
 * @module proxy/chain/mulch-forward
 * Forwarding to a mulch-proxy child (SPEC §10), the way mulch-proxy's parent
 * does: plain HTTP/1.1 (a Go HTTP/1.1 server speaks no h2c) through the proxy's
 * ordinary VM forwarder, with the usual X-Forwarded-* / X-Real-IP and
 * `Mulch-PSK: <psk>`, which is what makes a Mulch child believe X-Forwarded-For
 * and skip its rate limit. Whatever Mulch-PSK or vmfront chain header the client
 * sent is dropped first (headers.ts), so only ours reaches the child.
 *
 * Used for the Mulch children registered through mulch-api.ts, and meant for
 * the `Chained` entries of a Mulch domains file (forwarded to their TargetURL):
 * `forwardToMulchChild` / `upgradeToMulchChild` take the child's URL and the PSK.
 */
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { Forwarder } from '../forward.ts'
import type { ClientInfo, ClientRequest, ClientResponse, ForwardOutcome, UpstreamFailure } from '../http-types.ts'
import { upstreamHeaders } from '../headers.ts'
import type { WebSocketProxy } from '../websocket.ts'
import { MULCH_PSK_HEADER_NAME } from './mulch-api.ts'

/** The origin requests go to: a Mulch TargetURL/ForwardTo is scheme://host:port (a path is not used). */
function originOf (childUrl: string): string {
  return new URL(childUrl).origin
}

/**
 * Forwards one request to a Mulch child over HTTP/1.1 with `Mulch-PSK`. `req.url`
 * must be origin-form (the request handler makes it so before routing).
 */
export function forwardToMulchChild (
  forwarder: Forwarder, req: ClientRequest, res: ClientResponse, childUrl: string, psk: string,
  client: ClientInfo, onError: (outcome: ForwardOutcome) => void
): void {
  const headers = upstreamHeaders(req.rawHeaders, client, req.headers.connection as string | undefined)
  headers.push(MULCH_PSK_HEADER_NAME, psk)
  forwarder.forward(req, res, originOf(childUrl), req.url ?? '/', headers, onError)
}

/** Forwards a WebSocket upgrade to a Mulch child with `Mulch-PSK` (HTTP/1.1, as any VM). */
export function upgradeToMulchChild (
  websockets: WebSocketProxy, req: IncomingMessage, socket: Duplex, head: Buffer, childUrl: string, psk: string,
  client: ClientInfo, done: (status: number, failure?: UpstreamFailure) => void
): void {
  websockets.upgrade(req, socket, head, originOf(childUrl), client, done, { extraHeaders: { [MULCH_PSK_HEADER_NAME.toLowerCase()]: psk } })
}
