/**
 * @module proxy/chain/parent-trust
 * The child's side of the session proof (see auth.ts): it answers the chain's
 * control requests on its own listeners, remembers which HTTP/2 sessions the
 * parent authenticated, and issues and takes one-time WebSocket tickets.
 *
 * `fromParent(req)` is true only for a request on an authenticated session, or
 * for a WebSocket upgrade that brings a live ticket, from the address of the
 * session that asked for it. A chain header on anything else is a client's:
 * counted, logged (throttled) and given no weight; the proxy strips it before
 * the VM. Control requests never reach the router.
 *
 * Tickets are kept in a TicketStore: this process's own, or with workers the
 * primary's (proxy/chain/shared.ts), since the upgrade that spends a ticket may
 * reach another worker than the session that asked for it. Spending one is
 * therefore asynchronous: `upgradePending(req)` settles the decision before the
 * upgrade handler asks `fromParent`.
 */
import { randomBytes } from 'node:crypto'
import type { ServerResponse } from 'node:http'
import type { Http2ServerRequest, ServerHttp2Session } from 'node:http2'
import type { ClientRequest, ClientResponse } from '../http-types.ts'
import { CHAIN_AUTH_HEADER } from '../headers.ts'
import { normalizeIp } from '../ip-match.ts'
import type { Logger } from '../log.ts'
import { createLogThrottle } from '../log-throttle.ts'
import { CHAIN_CHALLENGE_PATH, CHAIN_CONTROL_PREFIX, CHAIN_SESSION_PATH, CHAIN_TICKET_PATH, sameSecret, type ChainAuth } from './auth.ts'

/** A WebSocket ticket not used within this is void. */
export const TICKET_TTL_MS = 10_000
/** Tickets outstanding at once; a ticket request past it gets 503. */
export const MAX_TICKETS = 4096
/** At most one log line per kind of refused proof in this interval. */
const FAILURE_LOG_INTERVAL_MS = 10_000

/** True for a request target in the chain's reserved path space. */
export function isChainControlPath (url: string | undefined): boolean {
  return url !== undefined && url.startsWith(CHAIN_CONTROL_PREFIX)
}

/** A ticket as the parent's session asks for it and its upgrade brings it: 64 hex digits. */
const TICKET_FORM = /^[0-9a-f]{64}$/

/** The outcome of spending a WebSocket ticket. */
export type TicketCheck = 'ok' | 'unknown' | 'expired' | 'address'

/** Where the one-time WebSocket tickets live. */
export interface TicketStore {
  /** A new ticket for the parent at `peer`; undefined when MAX_TICKETS are outstanding. */
  issue (peer: string): Promise<string | undefined>
  /** Spends a ticket, whatever the outcome: a second try finds it `unknown`. */
  take (ticket: string, peer: string): Promise<TicketCheck>
}

/** The tickets of this process (a single one, or a primary's for its workers). */
export function createTicketStore (now: () => number = Date.now): TicketStore & { size (): number } {
  // Insertion order is expiry order (one TTL), so expired tickets sit at the front.
  const tickets = new Map<string, { expiresAt: number, peer: string }>()
  function prune (): void {
    const t = now()
    for (const [ticket, entry] of tickets) {
      if (entry.expiresAt > t) break
      tickets.delete(ticket)
    }
  }
  return {
    async issue (peer) {
      prune()
      if (tickets.size >= MAX_TICKETS) return undefined
      const ticket = randomBytes(32).toString('hex')
      tickets.set(ticket, { expiresAt: now() + TICKET_TTL_MS, peer })
      return ticket
    },
    async take (ticket, peer) {
      const entry = tickets.get(ticket)
      if (entry === undefined) return 'unknown'
      tickets.delete(ticket)
      if (entry.expiresAt <= now()) return 'expired'
      return entry.peer === peer ? 'ok' : 'address'
    },
    size () {
      prune()
      return tickets.size
    }
  }
}

export interface ParentTrustOptions {
  auth: ChainAuth
  /** This child's own URL origin (child_url), part of every proof. */
  childOrigin: string
  logger: Logger
  /** Counts a refused proof (vmfront_chain_auth_failures_total). */
  onFailure: () => void
  /** Where tickets are issued and spent (default: a store of this process's own). */
  tickets?: TicketStore
  now?: () => number
}

export interface ParentTrust {
  /** Answers a request in the chain's path space; false for any other request. */
  handleControl (req: ClientRequest, res: ClientResponse): boolean
  /** Whether a request comes from the authenticated parent (idempotent per request). */
  fromParent (req: ClientRequest): boolean
  /**
   * For an HTTP/1.1 upgrade that brings a chain header: spends its ticket and
   * settles what `fromParent` answers for it. Undefined: nothing to wait for.
   */
  upgradePending (req: ClientRequest): Promise<void> | undefined
  /** Sessions the parent authenticated that are still open. */
  sessions (): number
}

interface SessionState {
  /** The nonce issued on this session and not yet answered. */
  nonce?: string
  /** Set once the parent proved itself on this session. */
  controlKey?: string
}

type Kind = 'proof' | 'header' | 'ticket' | 'control'

/** Creates the child's trust state. */
export function createParentTrust (options: ParentTrustOptions): ParentTrust {
  const { auth, childOrigin, logger } = options
  const tickets = options.tickets ?? createTicketStore(options.now)
  const states = new WeakMap<ServerHttp2Session, SessionState>()
  const trusted = new Set<ServerHttp2Session>()
  const decided = new WeakMap<object, boolean>()
  const failureLog = createLogThrottle(FAILURE_LOG_INTERVAL_MS)

  function refused (kind: Kind, peer: string, message: string): void {
    options.onFailure()
    const suppressed = failureLog.admit(kind)
    if (suppressed >= 0) logger.warn(message, { peer, ...(suppressed > 0 ? { suppressed } : {}) })
  }

  function answer (res: ClientResponse, status: number, secret?: string): void {
    const headers: Record<string, string> = { 'cache-control': 'no-store', 'content-length': '0' }
    if (secret !== undefined) headers[CHAIN_AUTH_HEADER] = secret
    // A ticket's answer comes later: the parent may have cancelled the stream meanwhile.
    if (res.writableEnded) return
    try {
      ;(res as ServerResponse).writeHead(status, headers)
      res.end()
    } catch { /* the stream is gone: nobody waits for this answer */ }
  }

  function sessionOf (req: ClientRequest): ServerHttp2Session | undefined {
    if (req.httpVersionMajor !== 2) return undefined
    return (req as Http2ServerRequest).stream?.session as ServerHttp2Session | undefined
  }

  function peerOf (req: ClientRequest): string {
    return normalizeIp(req.socket?.remoteAddress ?? '')
  }

  function trust (session: ServerHttp2Session, controlKey: string): void {
    const state = states.get(session) ?? {}
    state.controlKey = controlKey
    states.set(session, state)
    if (!trusted.has(session)) {
      trusted.add(session)
      session.once('close', () => { trusted.delete(session) })
    }
  }

  return {
    handleControl (req, res): boolean {
      if (!isChainControlPath(req.url)) return false
      const session = sessionOf(req)
      // Control requests exist only on the parent's HTTP/2 sessions.
      if (session === undefined || session.destroyed) {
        answer(res, 404)
        return true
      }
      const state = states.get(session) ?? {}
      states.set(session, state)
      const path = req.url!.split('?', 1)[0]
      const peer = peerOf(req)
      if (req.method === 'GET' && path === CHAIN_CHALLENGE_PATH && state.controlKey === undefined) {
        state.nonce = randomBytes(32).toString('hex')
        answer(res, 200, state.nonce)
        return true
      }
      if (req.method === 'POST' && path === CHAIN_SESSION_PATH && state.controlKey === undefined) {
        const nonce = state.nonce
        // One answer per nonce, right or wrong.
        state.nonce = undefined
        if (nonce !== undefined && auth.checkSessionProof(childOrigin, nonce, req.headers[CHAIN_AUTH_HEADER])) {
          trust(session, auth.controlKey(childOrigin, nonce))
          logger.debug('chain parent authenticated an HTTP/2 session', { peer })
          answer(res, 204)
          return true
        }
        refused('proof', peer, 'chain session proof refused: wrong PSK, or not a vmfront parent')
        answer(res, 401)
        // A session that failed its proof is not worth keeping.
        session.close()
        return true
      }
      if (req.method === 'POST' && path === CHAIN_TICKET_PATH && state.controlKey !== undefined && sameSecret(req.headers[CHAIN_AUTH_HEADER], state.controlKey)) {
        tickets.issue(peer).then((ticket) => {
          if (ticket === undefined) answer(res, 503)
          else answer(res, 200, ticket)
        }, (err: unknown) => {
          logger.warn('chain WebSocket ticket not issued: the ticket store did not answer', { peer, err })
          answer(res, 503)
        })
        return true
      }
      if (req.headers[CHAIN_AUTH_HEADER] !== undefined) refused('control', peer, 'chain control request refused')
      answer(res, 404)
      return true
    },

    fromParent (req): boolean {
      const known = decided.get(req)
      if (known !== undefined) return known
      let result = false
      const session = sessionOf(req)
      const value = req.headers[CHAIN_AUTH_HEADER]
      if (session !== undefined) {
        result = trusted.has(session)
        if (!result && value !== undefined) refused('header', peerOf(req), 'chain header on a session the parent did not authenticate: ignored')
      } else if (value !== undefined) {
        // A ticket is taken by upgradePending, before the upgrade handler asks.
        refused('header', peerOf(req), 'chain header from a client: ignored')
      }
      decided.set(req, result)
      return result
    },

    upgradePending (req): Promise<void> | undefined {
      const value = req.headers[CHAIN_AUTH_HEADER]
      if (value === undefined || sessionOf(req) !== undefined || decided.has(req)) return undefined
      const peer = peerOf(req)
      // Only what could be a ticket costs a look-up (with workers, a message to the primary).
      if (typeof value !== 'string' || req.headers.upgrade === undefined || !TICKET_FORM.test(value)) return undefined
      return tickets.take(value, peer).then((check) => {
        decided.set(req, check === 'ok')
        if (check === 'unknown') refused('header', peer, 'chain header from a client: ignored')
        else if (check !== 'ok') refused('ticket', peer, 'chain WebSocket ticket expired or from another address: ignored')
      }, (err: unknown) => {
        decided.set(req, false)
        refused('ticket', peer, 'chain WebSocket ticket not checked (the ticket store did not answer): served as an ordinary client')
        logger.debug('chain ticket check failed', { err })
      })
    },

    sessions: () => trusted.size
  }
}
