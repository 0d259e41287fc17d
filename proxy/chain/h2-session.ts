/**
 * @module proxy/chain/h2-session
 * One HTTP/2 session from the parent to a child (h2c for http://, h2 over TLS for
 * https://) with the keepalive that heals: a PING every `pingIntervalMs`; a PING
 * unanswered within `pingTimeoutMs` destroys the session with CHAIN_PING_TIMEOUT,
 * which fails every stream on it at once. Opening is bounded too: the TCP (and
 * TLS) connection and the child's SETTINGS frame must arrive within
 * `connectTimeoutMs`, because a frozen child's kernel still accepts connections.
 *
 * node:http2 is used directly rather than undici's H2 client: undici 7 sends
 * PINGs but has no PING timeout and does not expose its session to add one, and
 * on loopback node:http2 moved ~19k req/s against undici's ~12-14k (same server,
 * 64 concurrent streams, see the README's chaining section).
 */
import http2 from 'node:http2'
import { ChainError } from './errors.ts'

/** The tunables of a session, from the `[chain]` keys. */
export interface SessionOptions {
  pingIntervalMs: number
  pingTimeoutMs: number
  connectTimeoutMs: number
  /** Close a session with no stream for this long (0 = never). */
  idleTimeoutMs: number
  /** Streams we open on one session before the pool opens another. */
  maxConcurrentStreams: number
}

export type SessionState = 'connecting' | 'ready' | 'closing' | 'closed'

/** Why a session ended: undefined for a graceful end (idle, GOAWAY, shutdown). */
export type SessionEnd = ChainError | Error | undefined

export interface ChildSession {
  readonly id: number
  readonly state: SessionState
  /** Streams open now. */
  readonly streams: number
  /** The last PING's round trip, in ms (undefined before the first answer). */
  readonly lastPingRttMs: number | undefined
  /** True once the child's SETTINGS arrived (it is alive and speaks HTTP/2). */
  readonly established: boolean
  /** Opens a stream; throws if the session is closing (ERR_HTTP2_GOAWAY_SESSION...). */
  request (headers: http2.OutgoingHttpHeaders, options: http2.ClientSessionRequestOptions): http2.ClientHttp2Stream
  /** Graceful: GOAWAY, in-flight streams finish. */
  close (): void
  /** Immediate: every stream fails with `err`. */
  destroy (err?: Error): void
}

export interface SessionEvents {
  /** The child's SETTINGS arrived. */
  onReady (session: ChildSession): void
  /** The session will take no new streams (GOAWAY received or sent). */
  onDraining (session: ChildSession): void
  /** Called once, when the session is gone; `end` says why for a failure. */
  onClosed (session: ChildSession, end: SessionEnd): void
}

/** Opens a session to `origin`. Never throws: failures arrive through `onClosed`. */
export function openChildSession (id: number, origin: string, options: SessionOptions, events: SessionEvents): ChildSession {
  let state: SessionState = 'connecting'
  let streams = 0
  let established = false
  let lastPingRttMs: number | undefined
  let failure: Error | undefined
  let pingTimer: NodeJS.Timeout | undefined
  let pingDeadline: NodeJS.Timeout | undefined
  let idleTimer: NodeJS.Timeout | undefined

  const session = http2.connect(origin, {
    // Many uploads in flight at once must not trip nghttp2's memory guard (ENHANCE_YOUR_CALM).
    maxSessionMemory: 64,
    peerMaxConcurrentStreams: options.maxConcurrentStreams,
    settings: { enablePush: false, initialWindowSize: 1 << 20 }
  })
  // The HTTP/2 default connection window (64 KiB) throttles every stream sharing it.
  session.once('connect', () => { try { session.setLocalWindowSize(8 << 20) } catch { /* closing */ } })

  const connectTimer = setTimeout(() => {
    fail(new ChainError('CHAIN_CONNECT_TIMEOUT', `no HTTP/2 SETTINGS from the child within ${options.connectTimeoutMs} ms`))
  }, options.connectTimeoutMs)
  connectTimer.unref()

  function fail (err: Error): void {
    if (state === 'closed') return
    failure ??= err
    session.destroy(err)
  }

  function clearTimers (): void {
    clearTimeout(connectTimer)
    clearInterval(pingTimer)
    clearTimeout(pingDeadline)
    clearTimeout(idleTimer)
  }

  function sendPing (): void {
    if (pingDeadline !== undefined || session.destroyed || session.closed) return
    const sent = session.ping((err, duration) => {
      clearTimeout(pingDeadline)
      pingDeadline = undefined
      if (err === null) lastPingRttMs = Math.round(duration * 1000) / 1000
    })
    if (!sent) return
    pingDeadline = setTimeout(() => {
      fail(new ChainError('CHAIN_PING_TIMEOUT', `PING not answered within ${options.pingTimeoutMs} ms`))
    }, options.pingTimeoutMs)
    pingDeadline.unref()
  }

  function armIdle (): void {
    clearTimeout(idleTimer)
    idleTimer = undefined
    if (streams > 0 || options.idleTimeoutMs <= 0 || state !== 'ready') return
    idleTimer = setTimeout(() => { handle.close() }, options.idleTimeoutMs)
    idleTimer.unref()
  }

  const handle: ChildSession = {
    id,
    get state () { return state },
    get streams () { return streams },
    get lastPingRttMs () { return lastPingRttMs },
    get established () { return established },
    request (headers, requestOptions): http2.ClientHttp2Stream {
      const stream = session.request(headers, requestOptions)
      streams++
      clearTimeout(idleTimer)
      idleTimer = undefined
      stream.once('close', () => {
        streams--
        armIdle()
      })
      return stream
    },
    close (): void {
      if (state === 'closing' || state === 'closed') return
      state = 'closing'
      events.onDraining(handle)
      session.close()
    },
    destroy (err?: Error): void {
      if (err === undefined) {
        if (state !== 'closed') session.destroy()
        return
      }
      fail(err)
    }
  }

  session.once('remoteSettings', () => {
    clearTimeout(connectTimer)
    if (state !== 'connecting') return
    established = true
    state = 'ready'
    pingTimer = setInterval(sendPing, options.pingIntervalMs)
    pingTimer.unref()
    armIdle()
    events.onReady(handle)
  })
  session.on('goaway', () => {
    if (state === 'connecting' || state === 'ready') {
      state = 'closing'
      events.onDraining(handle)
    }
  })
  session.on('error', (err: Error) => { failure ??= err })
  session.on('frameError', () => { /* stream-level: reported on the stream */ })
  session.once('close', () => {
    clearTimers()
    // A live session that ends with no GOAWAY either way lost its connection (the child died).
    if (failure === undefined && state === 'ready') failure = new ChainError('CHAIN_SESSION_CLOSED', 'connection closed without GOAWAY')
    state = 'closed'
    events.onClosed(handle, failure)
  })
  // The session is a client of the child: it must not keep the process alive.
  session.unref()
  return handle
}
