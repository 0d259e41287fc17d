/**
 * @module proxy/chain/ws-forward
 * WebSockets (any HTTP/1.1 Upgrade) to a chained domain: the upgrade request is
 * replayed to the child's URL over a fresh HTTP/1.1 connection (TLS for https://)
 * with our X-Forwarded-* and the chain token, and the two sockets are then piped.
 * The child's own upgrade path takes it from there, so the VM's handshake answer
 * (101 or a refusal) reaches the client unchanged.
 *
 * Why not RFC 8441 (WebSockets over HTTP/2 extended CONNECT): it would share the
 * pooled session, but Node's HTTP/2 server does not hand extended CONNECT streams
 * to the HTTP/1.1 upgrade path the child uses for its VMs, and a long-lived tunnel
 * has little to gain from multiplexing.
 */
import net from 'node:net'
import tls from 'node:tls'
import { classifyUpstreamError, type UpstreamFailure } from '../forward.ts'
import type { ChainUpgradeFn } from '../handler.ts'
import { CHAIN_AUTH_HEADER, upstreamHeaders } from '../headers.ts'


export interface ChainUpgradeOptions {
  forwardToken: string
  connectTimeoutMs: number
  /** Closes a tunnel silent for this long (0 = never). */
  idleTimeoutMs: number
}

/** Creates the parent's upgrade forwarder. */
export function createChainUpgrade (options: ChainUpgradeOptions): ChainUpgradeFn {
  return function upgradeToChild (req, socket, head, entry, client, done): void {
    let settled = false
    const settle = (status: number, failure?: UpstreamFailure): void => {
      if (settled) return
      settled = true
      done(status, failure)
    }
    const url = new URL(entry.chain!.url)
    const port = Number(url.port !== '' ? url.port : url.protocol === 'https:' ? 443 : 80)
    const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname
    const upstream: net.Socket = url.protocol === 'https:'
      ? tls.connect({ host, port, servername: net.isIP(host) === 0 ? host : undefined, ALPNProtocols: ['http/1.1'] })
      : net.connect({ host, port })
    let status = 0
    const connectTimer = setTimeout(() => { upstream.destroy(Object.assign(new Error('connect timeout'), { code: 'UND_ERR_CONNECT_TIMEOUT' })) }, options.connectTimeoutMs)

    const flat = upstreamHeaders(req.rawHeaders, client, req.headers.connection)
    let text = `${req.method ?? 'GET'} ${req.url ?? '/'} HTTP/1.1\r\n`
    for (let i = 0; i < flat.length; i += 2) text += `${flat[i]}: ${flat[i + 1]}\r\n`
    text += `connection: upgrade\r\nupgrade: ${String(req.headers.upgrade ?? 'websocket')}\r\n${CHAIN_AUTH_HEADER}: ${options.forwardToken}\r\n\r\n`

    upstream.once(url.protocol === 'https:' ? 'secureConnect' : 'connect', () => {
      clearTimeout(connectTimer)
      upstream.write(text)
      if (head.length > 0) upstream.write(head)
      upstream.once('data', (chunk: Buffer) => {
        const m = /^HTTP\/1\.[01] (\d{3})/.exec(chunk.subarray(0, 16).toString('latin1'))
        status = m === null ? 502 : Number(m[1])
      })
      upstream.pipe(socket)
      socket.pipe(upstream)
      if (options.idleTimeoutMs > 0) {
        upstream.setTimeout(options.idleTimeoutMs, () => { upstream.destroy(); socket.destroy() })
      }
    })
    upstream.on('error', (err: Error & { code?: string }) => {
      clearTimeout(connectTimer)
      if (status === 0 && socket.writable) {
        const { status: code, failure } = classifyUpstreamError(err)
        socket.end(`HTTP/1.1 ${code} ${code === 504 ? 'Gateway Timeout' : 'Bad Gateway'}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`)
        settle(code, failure)
        return
      }
      socket.destroy()
    })
    upstream.once('close', () => {
      clearTimeout(connectTimer)
      if (!socket.destroyed) socket.end()
      settle(status === 0 ? 502 : status, status === 0 ? 'reset' : undefined)
    })
    socket.once('close', () => {
      if (!upstream.destroyed) upstream.destroy()
      settle(status === 0 ? 499 : status, status === 0 ? 'client_abort' : undefined)
    })
  }
}
