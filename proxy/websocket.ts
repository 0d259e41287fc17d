/**
 * @module proxy/websocket
 * WebSocket (and other HTTP/1.1 Upgrade) forwarding through http-proxy-3: the
 * client's upgrade request goes to the VM with our forwarding headers, then the
 * two sockets are piped until either side closes.
 */
import type { ClientRequest, IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { createProxyServer } from 'http-proxy-3'
import type { Socket } from 'node:net'
import { classifyUpstreamError, type UpstreamFailure } from './forward.ts'
import { FORWARDING_HEADERS, CHAIN_AUTH_HEADER, type ClientInfo } from './headers.ts'

export interface WebSocketProxy {
  /**
   * Forwards an upgrade request. `done` is called once: with a failure when the VM
   * could not be reached (a 502/504 was written to the socket), or without one when
   * the tunnel closes.
   */
  upgrade (req: IncomingMessage, socket: Duplex, head: Buffer, origin: string, client: ClientInfo, done: (status: number, failure?: UpstreamFailure) => void): void
  close (): void
}

/** The VM's answer to the handshake (101, or the status it refused with), kept on the client request. */
const VM_STATUS = Symbol('vmfront.vmStatus')
type TrackedRequest = IncomingMessage & { [VM_STATUS]?: number }

export function createWebSocketProxy (options: { connectTimeoutMs: number, idleTimeoutMs: number }): WebSocketProxy {
  const proxy = createProxyServer({ ws: true, xfwd: false, prependPath: false, proxyTimeout: options.connectTimeoutMs })
  // Errors are handled per call; this keeps an unhandled 'error' from throwing.
  proxy.on('error', () => {})
  // A VM that refuses the upgrade answers a plain response, relayed as is: record its status, not 101.
  proxy.on('proxyReqWs', (proxyReq: ClientRequest, req: TrackedRequest) => {
    proxyReq.once('response', (res: IncomingMessage) => { req[VM_STATUS] = res.statusCode })
    proxyReq.once('upgrade', () => { req[VM_STATUS] = 101 })
  })
  return {
    upgrade (req, socket, head, origin, client, done): void {
      for (const name of Object.keys(req.headers)) {
        if (FORWARDING_HEADERS.has(name) || name === CHAIN_AUTH_HEADER) delete req.headers[name]
      }
      req.headers['x-forwarded-for'] = client.forwardedFor
      req.headers['x-forwarded-proto'] = client.proto
      req.headers['x-forwarded-host'] = client.forwardedHost
      req.headers['x-real-ip'] = client.clientIp
      let settled = false
      const settle = (status: number, failure?: UpstreamFailure): void => {
        if (settled) return
        settled = true
        done(status, failure)
      }
      if (options.idleTimeoutMs > 0) (socket as Socket).setTimeout?.(options.idleTimeoutMs, () => { socket.destroy() })
      // Closed before the VM answered: the client gave up (499), like a request.
      socket.once('close', () => {
        const status = (req as TrackedRequest)[VM_STATUS]
        settle(status ?? 499, status === undefined ? 'client_abort' : undefined)
      })
      proxy.ws(req, socket, head, { target: origin }, (err) => {
        const { status, failure } = classifyUpstreamError(err as Error & { code?: string })
        if (socket.writable) {
          socket.end(`HTTP/1.1 ${status} ${status === 504 ? 'Gateway Timeout' : 'Bad Gateway'}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`)
        }
        settle(status, failure)
      })
    },
    close (): void {
      proxy.close()
    }
  }
}
