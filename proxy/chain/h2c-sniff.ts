/**
 * @module proxy/chain/h2c-sniff
 * Lets a child's plain HTTP listener speak h2c (HTTP/2 with prior knowledge, RFC
 * 9113 §3.3) for its parent, beside ordinary HTTP/1.1: the first bytes of each
 * new connection are read; the HTTP/2 connection preface sends the socket to an
 * http2 server, anything else to Node's HTTP/1.1 connection handling, with the
 * bytes put back (unshift) either way. HTTP/1.1 serving is unchanged otherwise:
 * Node's own listener still parses (strict framing, header limits, timeouts).
 * HTTP/2 requests are emitted as the http.Server's own 'request' events, so they
 * run through the same handler as HTTP/1.1 requests (req.httpVersion is "2.0").
 *
 * Why sniff rather than a second listener: the parent reaches the child at the
 * same address the child already serves (child_url = the child's http listener),
 * with no extra port to open, firewall or configure.
 */
import type http from 'node:http'
import http2 from 'node:http2'
import type { Socket } from 'node:net'
import type { Logger } from '../log.ts'
import { trackServerSessions } from './h2-drain.ts'

/** The client connection preface every HTTP/2 connection starts with (RFC 9113 §3.4). */
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1')

export interface H2cOptions {
  /** SETTINGS_MAX_CONCURRENT_STREAMS offered to the parent. */
  maxConcurrentStreams: number
  /** SETTINGS_MAX_HEADER_LIST_SIZE, like the HTTP/1.1 parser's limit. */
  maxHeaderBytes: number
  /** A connection that sends nothing for this long is closed (slowloris). */
  firstBytesTimeoutMs: number
  logger: Logger
}

export interface H2cAttachment {
  /** Open HTTP/2 sessions. */
  sessions (): number
  /**
   * Shutdown: GOAWAY to every session; idle ones close at once, busy ones when
   * their last stream ends, new ones as they start (see h2-drain.ts).
   */
  closeAll (): void
  /** Immediate. */
  destroyAll (): void
}

/**
 * Makes `server` (a plain node:http server) accept h2c prior knowledge too.
 * Must be called once, before the server accepts connections.
 */
export function attachH2c (server: http.Server, options: H2cOptions): H2cAttachment {
  const native = server.listeners('connection').find((l) => l.name === 'connectionListener') as ((this: http.Server, socket: Socket) => void) | undefined
  if (native === undefined) throw new Error('attachH2c: the server has no native connection listener (already attached?)')
  const h2 = http2.createServer({
    settings: { maxConcurrentStreams: options.maxConcurrentStreams, maxHeaderListSize: options.maxHeaderBytes },
    // Many uploads in flight at once must not trip nghttp2's memory guard (ENHANCE_YOUR_CALM).
    maxSessionMemory: 64
  })
  const sessions = trackServerSessions(h2)
  h2.on('session', (session: http2.ServerHttp2Session) => {
    session.once('connect', () => { try { session.setLocalWindowSize(8 << 20) } catch { /* closing */ } })
  })
  h2.on('request', (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => { server.emit('request', req, res) })
  h2.on('sessionError', (err: Error) => { options.logger.debug('h2c session error', { err }) })

  // Connections not yet sniffed: Node's HTTP server does not know them, so a
  // shutdown must close them itself (they have not sent a whole request).
  const pending = new Set<Socket>()
  let draining = false
  server.removeListener('connection', native)
  server.prependListener('connection', function sniffConnection (socket: Socket): void {
    if (draining) {
      socket.destroy()
      return
    }
    let buffered: Buffer = Buffer.alloc(0)
    pending.add(socket)
    const timer = setTimeout(() => { socket.destroy() }, options.firstBytesTimeoutMs)
    const onData = (chunk: Buffer): void => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk])
      const n = Math.min(buffered.length, PREFACE.length)
      const isH2 = buffered.subarray(0, n).equals(PREFACE.subarray(0, n))
      if (isH2 && buffered.length < PREFACE.length) return
      clearTimeout(timer)
      pending.delete(socket)
      socket.removeListener('data', onData)
      socket.removeListener('close', onClose)
      socket.removeListener('error', onError)
      socket.pause()
      socket.unshift(buffered)
      if (isH2) {
        socket.setKeepAlive(true, 60_000)
        h2.emit('connection', socket)
        return
      }
      native.call(server, socket)
      // The HTTP/1.1 listener reads the rest from the handle; the bytes put back
      // reach its parser through the stream's 'data' once resumed.
      socket.resume()
    }
    const onClose = (): void => {
      clearTimeout(timer)
      pending.delete(socket)
    }
    // The socket closes after an error; nothing was parsed yet.
    const onError = (): void => {}
    socket.on('data', onData)
    socket.once('close', onClose)
    socket.on('error', onError)
  })

  return {
    sessions: () => sessions.count(),
    closeAll (): void {
      draining = true
      for (const socket of pending) socket.destroy()
      sessions.drain()
    },
    destroyAll (): void {
      draining = true
      for (const socket of pending) socket.destroy()
      sessions.destroyAll()
    }
  }
}
