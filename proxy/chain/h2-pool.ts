/**
 * @module proxy/chain/h2-pool
 * The pooled HTTP/2 sessions to one child, and its health. Requests share one
 * session (multiplexed) until it carries `maxConcurrentStreams`, then another
 * opens, up to MAX_SESSIONS.
 *
 * Healing: a session that fails (PING timeout, connect failure, socket error) is
 * destroyed — its streams fail at once — and when no healthy session is left the
 * child is marked down: new requests are refused immediately (502) instead of
 * queueing behind a link that does not answer, while a probe session reconnects
 * with backoff. The first probe that gets the child's SETTINGS marks it up again
 * and carries traffic. Nothing here ever exits the process or blocks a request
 * for longer than the connect or PING timeouts.
 */
import type { Logger } from '../log.ts'
import { ChainError } from './errors.ts'
import { openChildSession, type ChildSession, type SessionEnd, type SessionOptions } from './h2-session.ts'

/** More sessions than this per child only add load; streams then queue in nghttp2. */
const MAX_SESSIONS = 8
/** First probe delay after a failure; doubles up to the cap. */
const PROBE_START_MS = 100

export type PoolHealth = 'up' | 'down'

/** The status of a child's sessions, for /status and the dump. */
export interface PoolStatus {
  health: PoolHealth
  connected: boolean
  sessions: number
  streams: number
  last_ping_rtt_ms: number | undefined
  resets: number
  last_reset_reason: string | undefined
  last_failure: string | undefined
  down_since: string | undefined
  /** Whether the child accepted the last ready session's proof. */
  authenticated: boolean
}

export interface ChildPool {
  readonly child: string
  readonly url: string
  /** A session to open a stream on, or the error to answer with when the child is down. */
  acquire (): ChildSession | ChainError
  /** Marks a session as unusable for new streams (after a GOAWAY surprised request()). */
  retire (session: ChildSession): void
  /** Tries to reconnect now (the child just registered again). */
  probeNow (): void
  status (): PoolStatus
  /** Closes every session (graceful unless `force`) and stops probing. */
  close (force?: boolean): void
}

export interface PoolOptions extends SessionOptions {
  child: string
  url: string
  logger: Logger
  /** Counts a torn-down session in vmfront_chain_session_resets_total{child}. */
  onReset: (child: string) => void
}

/** Describes why a session failed, for the log and /status. */
function reasonOf (err: SessionEnd): string {
  if (err === undefined) return 'closed'
  const code = (err as { code?: string }).code
  if (code === 'CHAIN_PING_TIMEOUT') return 'ping timeout'
  if (code === 'CHAIN_CONNECT_TIMEOUT') return 'connect timeout'
  return code !== undefined ? `${code}: ${err.message}` : err.message
}

/** Creates the pool of one child; sessions open on demand. */
export function createChildPool (options: PoolOptions): ChildPool {
  const { logger, child, url } = options
  const sessions: ChildSession[] = []
  let nextId = 1
  let health: PoolHealth = 'up'
  let downSince: number | undefined
  let downError: ChainError | undefined
  let probe: ChildSession | undefined
  let probeTimer: NodeJS.Timeout | undefined
  let probeDelayMs = PROBE_START_MS
  const probeMaxMs = Math.max(1000, Math.min(options.pingIntervalMs, 5000))
  let resets = 0
  let lastResetReason: string | undefined
  let lastFailure: string | undefined
  let closed = false
  /** Whether the last session's proof failed (logged once per change, not per session). */
  let unauthenticated = false

  function usable (s: ChildSession): boolean {
    return s.state === 'connecting' || s.state === 'ready'
  }

  function open (): ChildSession {
    const session = openChildSession(nextId++, url, options, {
      onReady (s) {
        if (health === 'down') markUp(s)
        if (options.auth === undefined) return
        if (!s.authenticated && !unauthenticated) {
          logger.warn('chain session not authenticated by the child: it treats our requests as an ordinary client\'s (client addresses lost, rate limited there too)', { child, url, reason: s.authProblem })
        } else if (s.authenticated && unauthenticated) {
          logger.info('chain session authenticated by the child again', { child, url })
        }
        unauthenticated = !s.authenticated
      },
      onDraining () { /* usable() now excludes it */ },
      onClosed (s, end) {
        const i = sessions.indexOf(s)
        if (i !== -1) sessions.splice(i, 1)
        if (s === probe) probe = undefined
        if (closed || end === undefined) return
        failed(s, end)
      }
    })
    sessions.push(session)
    return session
  }

  function failed (s: ChildSession, end: Error): void {
    const reason = reasonOf(end)
    lastFailure = reason
    if (s.established) {
      // An established session torn down: the keepalive (or the socket) caught a dead link.
      resets++
      lastResetReason = reason
      options.onReset(child)
      logger.warn('chain session reset', { child, url, reason, session: s.id, rtt_ms: s.lastPingRttMs })
    } else if (health === 'up') {
      logger.warn('chain session failed to open', { child, url, reason })
    } else {
      logger.debug('chain probe failed', { child, url, reason })
    }
    if (sessions.some((x) => x.state === 'ready')) return
    markDown(end)
  }

  function markDown (end: Error): void {
    for (const s of sessions) if (!s.established) s.destroy(new ChainError('CHAIN_CHILD_DOWN', 'child marked down'))
    if (health === 'down') {
      scheduleProbe()
      return
    }
    health = 'down'
    downSince = Date.now()
    downError = new ChainError('CHAIN_CHILD_DOWN', `child "${child}" is unreachable (${reasonOf(end)})`, { cause: end })
    logger.warn('chain child down: refusing its requests until it answers again', { child, url, reason: reasonOf(end) })
    probeDelayMs = PROBE_START_MS
    scheduleProbe()
  }

  function markUp (s: ChildSession): void {
    const downMs = downSince === undefined ? 0 : Date.now() - downSince
    health = 'up'
    downSince = undefined
    downError = undefined
    clearTimeout(probeTimer)
    probeTimer = undefined
    probeDelayMs = PROBE_START_MS
    logger.info('chain child up again', { child, url, session: s.id, down_ms: downMs })
  }

  function scheduleProbe (): void {
    if (closed || probeTimer !== undefined || probe !== undefined) return
    const delay = probeDelayMs
    probeDelayMs = Math.min(probeDelayMs * 2, probeMaxMs)
    probeTimer = setTimeout(() => {
      probeTimer = undefined
      if (closed || health === 'up') return
      probe = open()
    }, delay)
    probeTimer.unref()
  }

  return {
    child,
    url,
    acquire (): ChildSession | ChainError {
      if (closed) return new ChainError('CHAIN_CHILD_DOWN', `child "${child}" is no longer registered`)
      if (health === 'down') return downError!
      let best: ChildSession | undefined
      for (const s of sessions) {
        if (!usable(s)) continue
        // A child (an https listener offers 100) may accept fewer streams than we
        // would send: past its limit, Node would queue them instead of a new session.
        if (s.streams < Math.min(options.maxConcurrentStreams, s.peerMaxStreams)) return s
        if (best === undefined || s.streams < best.streams) best = s
      }
      if (sessions.filter(usable).length < MAX_SESSIONS || best === undefined) return open()
      return best
    },
    retire (session): void {
      session.close()
    },
    probeNow (): void {
      if (health !== 'down' || closed) return
      clearTimeout(probeTimer)
      probeTimer = undefined
      probeDelayMs = PROBE_START_MS
      scheduleProbe()
    },
    status (): PoolStatus {
      const ready = sessions.filter((s) => s.state === 'ready')
      const rtt = ready.find((s) => s.lastPingRttMs !== undefined)?.lastPingRttMs
      return {
        health,
        connected: ready.length > 0,
        sessions: sessions.length,
        streams: sessions.reduce((n, s) => n + s.streams, 0),
        last_ping_rtt_ms: rtt,
        resets,
        last_reset_reason: lastResetReason,
        last_failure: lastFailure,
        down_since: downSince === undefined ? undefined : new Date(downSince).toISOString(),
        authenticated: ready.length > 0 ? ready.every((s) => s.authenticated) : !unauthenticated
      }
    },
    close (force = false): void {
      closed = true
      clearTimeout(probeTimer)
      for (const s of [...sessions]) {
        if (force) s.destroy(new ChainError('CHAIN_SESSION_CLOSED', `child "${child}" removed`))
        else s.close()
      }
    }
  }
}
