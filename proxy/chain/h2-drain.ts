/**
 * @module proxy/chain/h2-drain
 * Tracks the HTTP/2 sessions a server accepts so a shutdown can drain them
 * without depending on the peers: `drain()` sends GOAWAY on every session,
 * closes idle ones at once and each busy one as soon as its last stream ends
 * (in-flight streams finish); a session that starts during the drain is closed
 * at once. "Closed" means destroyed after the final frames are flushed, not a
 * graceful close that waits for the peer to close its side too: a parent that
 * keeps its end of an idle connection open (or is frozen) must not hold the
 * child's exit until the drain timeout.
 */
import type { ServerHttp2Session } from 'node:http2'

export interface SessionDrain {
  /** Open sessions. */
  count (): number
  /** GOAWAY everywhere; idle sessions close now, busy ones after their last stream. */
  drain (): void
  /** Immediate, streams included. */
  destroyAll (): void
}

/** Anything that emits node:http2's server 'session' event (an h2 or h2c server). */
export interface SessionSource {
  on (event: 'session', listener: (session: ServerHttp2Session) => void): unknown
}

/** Starts tracking `server`'s sessions; call before it accepts connections. */
export function trackServerSessions (server: SessionSource): SessionDrain {
  /** Each open session with its number of open streams. */
  const sessions = new Map<ServerHttp2Session, number>()
  let draining = false

  function closeIfIdle (session: ServerHttp2Session): void {
    if (session.destroyed || (sessions.get(session) ?? 0) > 0) return
    session.destroy()
  }

  function shut (session: ServerHttp2Session): void {
    if (session.destroyed) return
    // goaway(), not close(): close() would make the final teardown wait for the peer.
    try { session.goaway() } catch { /* already going */ }
    closeIfIdle(session)
  }

  server.on('session', (session) => {
    sessions.set(session, 0)
    session.once('close', () => { sessions.delete(session) })
    session.on('stream', (stream) => {
      sessions.set(session, (sessions.get(session) ?? 0) + 1)
      stream.once('close', () => {
        if (!sessions.has(session)) return
        sessions.set(session, sessions.get(session)! - 1)
        // After the stream's last frames are queued; destroy flushes them first.
        if (draining) setImmediate(closeIfIdle, session)
      })
    })
    if (draining) shut(session)
  })

  return {
    count: () => sessions.size,
    drain (): void {
      draining = true
      for (const session of [...sessions.keys()]) shut(session)
    },
    destroyAll (): void {
      draining = true
      for (const session of [...sessions.keys()]) session.destroy()
    }
  }
}
