/**
 * @module proxy/chain/ws-forward
 * WebSockets (any HTTP/1.1 Upgrade) to a chained domain: the upgrade request is
 * replayed to the child's URL over a fresh HTTP/1.1 connection (TLS for https://)
 * with our X-Forwarded-*, and the two sockets are then piped. The child's own
 * upgrade path takes it from there, so the VM's handshake answer (101 or a
 * refusal) reaches the client unchanged.
 *
 * Trust: that connection is not the authenticated HTTP/2 session, so the parent
 * first asks the child for a one-time ticket on the session (see auth.ts) and
 * sends it in CHAIN_AUTH_HEADER. The child takes each ticket once, within
 * seconds, from the session's address only: a copy is worth nothing. Without a
 * ticket (an older child, a slow answer) the upgrade still goes through, and the
 * child treats it like any client's.
 *
 * Bounds: the connection within `connectTimeoutMs`, then the child's answer to
 * the upgrade within `responseTimeoutMs` (504 otherwise), like a plain request.
 *
 * Why not RFC 8441 (WebSockets over HTTP/2 extended CONNECT): it would share the
 * pooled session, but Node's HTTP/2 server does not hand extended CONNECT streams
 * to the HTTP/1.1 upgrade path the child uses for its VMs, and a long-lived tunnel
 * has little to gain from multiplexing.
 */
import net from 'node:net'
import tls from 'node:tls'
import { classifyUpstreamError } from '../forward.ts'
import { type UpstreamFailure } from '../http-types.ts'
import type { ChainUpgradeFn } from './types.ts'
import { CHAIN_AUTH_HEADER, upstreamHeaders } from '../headers.ts'
import { ChainError } from './errors.ts'
import type { ChildPool } from './h2-pool.ts'

export interface ChainUpgradeOptions {
  /** The pool of a registered child (for its ticket), or undefined when it is gone. */
  pool: (child: string) => ChildPool | undefined
  connectTimeoutMs: number
  /** From the upgrade request sent to the child's first answer byte (504 after). */
  responseTimeoutMs: number
  /** Closes a tunnel silent for this long (0 = never). */
  idleTimeoutMs: number
}

/** Asks the child's pooled session for a ticket; undefined when it cannot give one. */
function ticketFor (pool: ChildPool | undefined, timeoutMs: number): Promise<string | undefined> {
  if (pool === undefined) return Promise.resolve(undefined)
  const session = pool.acquire()
  if (session instanceof ChainError) return Promise.resolve(undefined)
  return new Promise((resolve) => {
    session.whenReady((err) => {
      if (err !== undefined) {
        resolve(undefined)
        return
      }
      session.wsTicket(timeoutMs).then(resolve, () => { resolve(undefined) })
    })
  })
}

/** Creates the parent's upgrade forwarder. */
export function createChainUpgrade (options: ChainUpgradeOptions): ChainUpgradeFn {
  return function upgradeToChild (req, socket, head, entry, client, done): void {
    let settled = false
    let upstream: net.Socket | undefined
    const settle = (status: number, failure?: UpstreamFailure): void => {
      if (settled) return
      settled = true
      done(status, failure)
    }
    socket.once('close', () => {
      if (upstream !== undefined && !upstream.destroyed) upstream.destroy()
      settle(499, 'client_abort')
    })
    const url = new URL(entry.chain!.url)
    // Built now: `req` may not outlive the ticket's round trip unchanged.
    const flat = upstreamHeaders(req.rawHeaders, client, req.headers.connection)
    const requestLine = `${req.method ?? 'GET'} ${req.url ?? '/'} HTTP/1.1\r\n`
    const upgrade = String(req.headers.upgrade ?? 'websocket')

    ticketFor(options.pool(entry.chain!.child), options.connectTimeoutMs).then((ticket) => {
      if (settled || socket.destroyed) return
      let text = requestLine
      for (let i = 0; i < flat.length; i += 2) text += `${flat[i]}: ${flat[i + 1]}\r\n`
      text += `connection: upgrade\r\nupgrade: ${upgrade}\r\n`
      if (ticket !== undefined) text += `${CHAIN_AUTH_HEADER}: ${ticket}\r\n`
      connect(`${text}\r\n`)
    }, () => { /* ticketFor never rejects */ })

    function connect (text: string): void {
      const port = Number(url.port !== '' ? url.port : url.protocol === 'https:' ? 443 : 80)
      const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname
      const conn: net.Socket = url.protocol === 'https:'
        ? tls.connect({ host, port, servername: net.isIP(host) === 0 ? host : undefined, ALPNProtocols: ['http/1.1'] })
        : net.connect({ host, port })
      upstream = conn
      let status = 0
      const fail = (err: Error & { code?: string }): void => {
        clearTimeout(timer)
        if (status === 0 && socket.writable) {
          const { status: code, failure } = classifyUpstreamError(err)
          socket.end(`HTTP/1.1 ${code} ${code === 504 ? 'Gateway Timeout' : 'Bad Gateway'}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`)
          settle(code, failure)
        }
        conn.destroy()
      }
      let timer = setTimeout(() => { fail(Object.assign(new Error('connect timeout'), { code: 'UND_ERR_CONNECT_TIMEOUT' })) }, options.connectTimeoutMs)

      conn.once(url.protocol === 'https:' ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer)
        // A child that accepts the connection and never answers gets the same
        // bound as a plain request: 504 at timeouts.upstream_response.
        timer = setTimeout(() => { fail(Object.assign(new Error('no answer to the upgrade'), { code: 'UND_ERR_HEADERS_TIMEOUT' })) }, options.responseTimeoutMs)
        conn.write(text)
        if (head.length > 0) conn.write(head)
        conn.once('data', (chunk: Buffer) => {
          clearTimeout(timer)
          const m = /^HTTP\/1\.[01] (\d{3})/.exec(chunk.subarray(0, 16).toString('latin1'))
          status = m === null ? 502 : Number(m[1])
        })
        conn.pipe(socket)
        socket.pipe(conn)
        if (options.idleTimeoutMs > 0) {
          conn.setTimeout(options.idleTimeoutMs, () => { conn.destroy(); socket.destroy() })
        }
      })
      conn.on('error', (err: Error & { code?: string }) => {
        if (status === 0) {
          fail(err)
          return
        }
        socket.destroy()
      })
      conn.once('close', () => {
        clearTimeout(timer)
        if (!socket.destroyed) socket.end()
        settle(status === 0 ? 502 : status, status === 0 ? 'reset' : undefined)
      })
    }
  }
}
