/**
 * @module proxy/chain/h2-session
 * One HTTP/2 session from the parent to a child (h2c for http://, h2 over TLS for
 * https://) with the keepalive that heals: a PING every `pingIntervalMs`; a PING
 * unanswered within `pingTimeoutMs` destroys the session with CHAIN_PING_TIMEOUT,
 * which fails every stream on it at once. Opening is bounded too: the TCP (and
 * TLS) connection and the child's SETTINGS frame must arrive within
 * `connectTimeoutMs`, because a frozen child's kernel still accepts connections.
 *
 * Before a session carries any request, the parent proves itself on it (auth.ts):
 * it asks the child for a nonce and answers with the PSK's HMAC of it, so the
 * child trusts this session, and no copy of anything sent on it elsewhere. A child
 * that does not take the proof (an older or foreign one) still gets the traffic,
 * unauthenticated: it then treats the parent like any client.
 *
 * node:http2 is used directly rather than undici's H2 client: undici 7 sends
 * PINGs but has no PING timeout and does not expose its session to add one, and
 * on loopback node:http2 moved ~19k req/s against undici's ~12-14k (same server,
 * 64 concurrent streams, see the README's chaining section).
 */
import http2 from 'node:http2'
import { CHAIN_AUTH_HEADER } from '../headers.ts'
import { CHAIN_CHALLENGE_PATH, CHAIN_SESSION_PATH, CHAIN_TICKET_PATH, type ChainAuth } from './auth.ts'
import { ChainError } from './errors.ts'

/** A nonce or ticket from the child: 32 random bytes in hex. */
const SECRET = /^[0-9a-f]{64}$/

/** The tunables of a session, from the `[chain]` keys. */
export interface SessionOptions {
  pingIntervalMs: number
  pingTimeoutMs: number
  connectTimeoutMs: number
  /** Close a session with no stream for this long (0 = never). */
  idleTimeoutMs: number
  /** Streams we open on one session before the pool opens another. */
  maxConcurrentStreams: number
  /** The PSK's proofs: with them the session authenticates itself first (see auth.ts). */
  auth?: ChainAuth
}

export type SessionState = 'connecting' | 'ready' | 'closing' | 'closed'

/** Why a session ended: undefined for a graceful end (idle, GOAWAY, shutdown). */
export type SessionEnd = ChainError | Error | undefined

export interface ChildSession {
  readonly id: number
  readonly state: SessionState
  /** Streams open now. */
  readonly streams: number
  /** How many concurrent streams the child accepts (its SETTINGS; unlimited before they arrive). */
  readonly peerMaxStreams: number
  /** The last PING's round trip, in ms (undefined before the first answer). */
  readonly lastPingRttMs: number | undefined
  /** True once the child's SETTINGS arrived (it is alive and speaks HTTP/2). */
  readonly established: boolean
  /** True once the child accepted this session's proof (it believes our forwarding headers). */
  readonly authenticated: boolean
  /** Why the child did not accept the proof, when it did not. */
  readonly authProblem: string | undefined
  /**
   * Calls `cb` once the session can carry requests (at once when it can now), or
   * with the reason it never will. Requests must wait for it: a stream sent before
   * the proof would reach the child unauthenticated.
   */
  whenReady (cb: (err: Error | undefined) => void): void
  /** A one-time WebSocket ticket from the child, or undefined (unauthenticated, refused, slow). */
  wsTicket (timeoutMs: number): Promise<string | undefined>
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
  let controlKey: string | undefined
  let authProblem: string | undefined
  const waiting: Array<(err: Error | undefined) => void> = []
  const target = new URL(origin)
  const control = { ':scheme': target.protocol === 'https:' ? 'https' : 'http', ':authority': target.host }
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

  /** Sends a control request (no body) and reads its status and CHAIN_AUTH_HEADER. */
  function controlRequest (method: string, path: string, secret: string | undefined, cb: (status: number, value: string | undefined) => void): http2.ClientHttp2Stream | undefined {
    let stream: http2.ClientHttp2Stream
    try {
      stream = session.request({ ...control, ':method': method, ':path': path, ...(secret === undefined ? {} : { [CHAIN_AUTH_HEADER]: secret }) }, { endStream: true })
    } catch {
      cb(0, undefined)
      return undefined
    }
    let status = 0
    let value: string | undefined
    stream.once('response', (headers) => {
      status = Number(headers[':status'])
      const v = headers[CHAIN_AUTH_HEADER]
      value = typeof v === 'string' ? v : undefined
    })
    stream.resume()
    stream.on('error', () => { /* the status (0 when none) says it failed */ })
    stream.once('close', () => { cb(status, value) })
    return stream
  }

  /** The session's proof (see auth.ts): challenge, then the HMAC of its nonce. */
  function authenticate (auth: ChainAuth): void {
    controlRequest('GET', CHAIN_CHALLENGE_PATH, undefined, (status, nonce) => {
      if (state !== 'connecting') return
      if (status !== 200 || nonce === undefined || !SECRET.test(nonce)) {
        becomeReady(`the child answered ${status === 0 ? 'nothing' : status} to the session challenge`)
        return
      }
      controlRequest('POST', CHAIN_SESSION_PATH, auth.sessionProof(origin, nonce), (proved) => {
        if (state !== 'connecting') return
        if (proved === 204) controlKey = auth.controlKey(origin, nonce)
        becomeReady(proved === 204 ? undefined : `the child refused the session proof (${proved === 0 ? 'no answer' : proved}): is its psk the same?`)
      })
    })
  }

  function becomeReady (problem: string | undefined): void {
    clearTimeout(connectTimer)
    authProblem = problem
    state = 'ready'
    pingTimer = setInterval(sendPing, options.pingIntervalMs)
    pingTimer.unref()
    armIdle()
    events.onReady(handle)
    for (const cb of waiting.splice(0)) cb(undefined)
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
    get peerMaxStreams () { return session.remoteSettings?.maxConcurrentStreams ?? Number.POSITIVE_INFINITY },
    get lastPingRttMs () { return lastPingRttMs },
    get established () { return established },
    get authenticated () { return controlKey !== undefined },
    get authProblem () { return authProblem },
    whenReady (cb): void {
      if (state === 'ready') cb(undefined)
      else if (state === 'connecting') waiting.push(cb)
      else cb(failure ?? new ChainError('CHAIN_SESSION_CLOSED', 'session closed before it carried requests'))
    },
    wsTicket (timeoutMs): Promise<string | undefined> {
      if (state !== 'ready' || controlKey === undefined) return Promise.resolve(undefined)
      return new Promise((resolve) => {
        const stream = controlRequest('POST', CHAIN_TICKET_PATH, controlKey, (status, ticket) => {
          clearTimeout(timer)
          resolve(status === 200 && ticket !== undefined && SECRET.test(ticket) ? ticket : undefined)
        })
        const timer = setTimeout(() => { stream?.close(http2.constants.NGHTTP2_CANCEL) }, timeoutMs)
      })
    },
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
    if (state !== 'connecting') return
    established = true
    // The connect timer keeps running: the proof must also complete within it.
    if (options.auth !== undefined) authenticate(options.auth)
    else becomeReady(undefined)
  })
  session.on('goaway', () => {
    if (state === 'connecting' || state === 'ready') {
      const wasConnecting = state === 'connecting'
      state = 'closing'
      events.onDraining(handle)
      if (wasConnecting) for (const cb of waiting.splice(0)) cb(new ChainError('CHAIN_SESSION_CLOSED', 'the child sent GOAWAY before the session carried requests'))
    }
  })
  session.on('error', (err: Error) => { failure ??= err })
  session.on('frameError', () => { /* stream-level: reported on the stream */ })
  session.once('close', () => {
    clearTimers()
    // A live session that ends with no GOAWAY either way lost its connection (the child died).
    if (failure === undefined && state === 'ready') failure = new ChainError('CHAIN_SESSION_CLOSED', 'connection closed without GOAWAY')
    state = 'closed'
    for (const cb of waiting.splice(0)) cb(failure ?? new ChainError('CHAIN_SESSION_CLOSED', 'session closed before it carried requests'))
    events.onClosed(handle, failure)
  })
  // The session is a client of the child: it must not keep the process alive.
  session.unref()
  return handle
}
