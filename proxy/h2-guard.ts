/**
 * @module proxy/h2-guard
 * Guards the HTTP/2 sessions clients open on the https listener.
 * - Rapid reset (CVE-2023-44487): a request is dispatched one turn after it arrives, and
 *   only if the client has not reset it meanwhile. HEADERS and RST_STREAM usually arrive
 *   in one read, and the compat 'request' event fires before the RST is processed.
 * - A session that resets more unfinished streams than its budget per window, and more
 *   than it let finish, gets GOAWAY(ENHANCE_YOUR_CALM) and is closed. The second condition
 *   spares sessions that carry many clients' requests (a chain parent, a corporate proxy),
 *   whose client aborts add up but stay a small share of their streams.
 * - The floods nghttp2 refuses itself (SETTINGS/PING ACK floods, CONTINUATION floods)
 *   are counted as abuse too.
 * - A session that is gone (GOAWAY sent, no stream left) keeps its TCP connection only
 *   for a short grace: Node ends the socket but then waits for the client to close its
 *   side, which a hostile or stuck client never does.
 * HTTP/1.1 requests on the same listener pass straight through.
 */
import http2 from 'node:http2'
import type { Http2SecureServer, Http2Session, ServerHttp2Session, ServerHttp2Stream } from 'node:http2'
import type { TLSSocket } from 'node:tls'
import type { ClientRequest, ClientResponse } from './http-types.ts'

/** Why a client connection was closed as abusive (`vmfront_http2_abusive_connections_total{reason}`). */
export type H2AbuseReason = 'rapid_reset' | 'flood' | 'continuation_flood'

export interface H2GuardOptions {
  /** Client resets of unfinished streams a session may make per window; past it, a session with more resets than finished streams is closed. */
  resetBudget: number
  resetWindowMs: number
  /** How long streams of an abusive session may finish, and a dead session's socket may linger. */
  graceMs: number
  onAbusive: (reason: H2AbuseReason, remoteAddress: string | undefined) => void
}

/** Streams one client session may have open at once (nginx 128, HAProxy 100, Go 250 → 100). */
export const H2_MAX_CONCURRENT_STREAMS = 100

/**
 * Twice the concurrency per 10 s: a browser that abandons a page cancels at most its open
 * streams at once, an attack resets thousands per second.
 */
export const H2_GUARD_DEFAULTS = { resetBudget: 2 * H2_MAX_CONCURRENT_STREAMS, resetWindowMs: 10_000, graceMs: 500 } as const

/** nghttp2 library errors (nghttp2.h) that mean a flood, not a broken client. */
const FLOOD_ERRNO: Record<number, H2AbuseReason> = {
  [-904]: 'flood', // NGHTTP2_ERR_FLOODED: unacknowledged SETTINGS/PING/RST piling up
  [-905]: 'continuation_flood' // NGHTTP2_ERR_TOO_MANY_CONTINUATIONS
}

type Handler = (req: ClientRequest, res: ClientResponse) => void

export interface H2Guard {
  /** Wraps the listener's request handler: HTTP/2 requests are dispatched one turn later if still open. */
  dispatch (handler: Handler): Handler
  /** Sends GOAWAY to every session: idle ones close now, the others once their streams are done. */
  goawayAll (): void
  /** Ends the sockets of sessions that are gone but whose client keeps the connection open. */
  sweep (): void
}

interface SessionState {
  readonly socket: TLSSocket
  readonly remoteAddress: string | undefined
  resets: number
  /** Streams that ended without a client reset, in the same window. */
  finished: number
  windowStart: number
  abusive: boolean
  /** When the session was first seen gone while its socket was still open. */
  deadSince?: number
  /** Abusive sessions: when the session is destroyed, streams still open included. */
  cutAt?: number
}

/** Attaches the guard to an HTTP/2 server (before it listens). */
export function guardHttp2Sessions (server: Http2SecureServer, options: H2GuardOptions): H2Guard {
  const states = new Map<Http2Session, SessionState>()
  let sweeper: NodeJS.Timeout | undefined

  // session.socket is a proxy that refuses destroy() and throws once unbound, so the guard
  // keeps the TLS socket itself: 'session' is emitted synchronously inside the server's
  // own 'secureConnection' listener, which runs after this prepended one.
  let connecting: TLSSocket | undefined
  server.prependListener('secureConnection', (socket: TLSSocket) => { connecting = socket })
  server.on('secureConnection', () => { connecting = undefined })
  server.on('session', (session: ServerHttp2Session) => {
    const socket = connecting
    connecting = undefined
    if (socket === undefined) return
    states.set(session, { socket, remoteAddress: socket.remoteAddress, resets: 0, finished: 0, windowStart: Date.now(), abusive: false })
    // 'close' comes after the session's 'error' (sessionError below still finds the state).
    session.once('close', () => {
      states.delete(session)
      if (states.size === 0 && sweeper !== undefined) {
        clearInterval(sweeper)
        sweeper = undefined
      }
    })
    sweeper ??= setInterval(sweep, Math.max(10, options.graceMs / 2)).unref()
  })

  server.on('stream', (stream: ServerHttp2Stream) => {
    const session = stream.session
    const state = session === undefined ? undefined : states.get(session)
    if (session === undefined || state === undefined) return
    // 'aborted' fires when the stream closes while our response is unfinished; `destroyed`
    // is already true when we cut it ourselves (upstream failure), false for a client reset.
    stream.once('aborted', () => {
      if (!stream.destroyed) clientReset(session, state)
    })
    stream.once('close', () => {
      if (stream.aborted) return
      rollWindow(state, Date.now())
      state.finished++
    })
  })

  server.on('sessionError', (err: Error & { errno?: number }, session: ServerHttp2Session) => {
    const reason = FLOOD_ERRNO[err.errno ?? 0]
    if (reason === undefined) return
    const state = states.get(session)
    if (state === undefined || state.abusive) return
    state.abusive = true
    options.onAbusive(reason, state.remoteAddress)
  })

  function rollWindow (state: SessionState, now: number): void {
    if (now - state.windowStart < options.resetWindowMs) return
    state.windowStart = now
    state.resets = 0
    state.finished = 0
  }

  function clientReset (session: Http2Session, state: SessionState): void {
    const now = Date.now()
    rollWindow(state, now)
    if (++state.resets <= options.resetBudget || state.resets <= state.finished || state.abusive) return
    state.abusive = true
    options.onAbusive('rapid_reset', state.remoteAddress)
    if (session.destroyed) return
    // No new stream after the last one received. The session lives on for the grace so the
    // client reads the GOAWAY: closing now, with its frames still arriving, would reset the
    // TCP connection and could discard the GOAWAY before the client reads it.
    session.goaway(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM)
    state.cutAt = now + options.graceMs
  }

  function sweep (): void {
    const now = Date.now()
    for (const [session, state] of states) {
      if (state.cutAt !== undefined && now >= state.cutAt && !session.destroyed) session.destroy()
      if (!session.destroyed || state.socket.destroyed) continue
      state.deadSince ??= now
      if (now - state.deadSince >= options.graceMs) state.socket.destroy()
    }
  }

  return {
    dispatch (handler: Handler): Handler {
      return function dispatchWhenStillOpen (req, res) {
        if (req.httpVersionMajor !== 2) {
          handler(req, res)
          return
        }
        const stream = (req as http2.Http2ServerRequest).stream
        setImmediate(() => {
          // Reset by the client in the same read: nothing of it may reach a VM. Nobody will read
          // its request, so make sure it is destroyed and frees its slot of the session.
          if (stream.closed || stream.destroyed) {
            stream.destroy()
            return
          }
          const state = stream.session === undefined ? undefined : states.get(stream.session)
          if (state?.abusive === true) {
            stream.close(http2.constants.NGHTTP2_REFUSED_STREAM)
            stream.destroy()
            return
          }
          handler(req, res)
        })
      }
    },
    goawayAll (): void {
      const now = Date.now()
      for (const [session, state] of states) {
        if (!session.closed && !session.destroyed) session.close()
        // Idle: destroyed at once; its socket gets the grace from now.
        if (session.destroyed && !state.socket.destroyed) state.deadSince ??= now
      }
    },
    sweep
  }
}
