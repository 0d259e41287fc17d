/**
 * @module proxy/chain/child-serve
 * What a chain child does on the listeners of a process that serves requests (a
 * single process, or each worker): h2c for the parent on the plain listener, the
 * parent's session proofs and WebSocket tickets (parent-trust.ts), recognition
 * of the authenticated parent's requests (and a Mulch parent's, mulch-trust.ts),
 * and the drain of the parent's HTTP/2 sessions at shutdown (h2-drain.ts).
 * Registration is elsewhere (child.ts), once per proxy.
 */
import http from 'node:http'
import type http2 from 'node:http2'
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { ClientRequest, ClientResponse } from '../http-types.ts'
import type { ChainDeps, ChainRuntime } from './types.ts'
import type { ChainAuth } from './auth.ts'
import { trackServerSessions, type SessionDrain } from './h2-drain.ts'
import { attachH2c } from './h2c-sniff.ts'
import { createParentTrust, type TicketStore } from './parent-trust.ts'
import type { MulchParentTrust } from './mulch-trust.ts'

type Listener = (req: ClientRequest, res: ClientResponse) => void
type UpgradeListener = (req: IncomingMessage, socket: Duplex, head: Buffer) => void

/**
 * Puts `control` in front of a server's request listeners: what it answers
 * (the chain's reserved paths) never reaches the router, metrics or access log.
 */
function interceptRequests (server: http.Server | http2.Http2SecureServer, control: (req: ClientRequest, res: ClientResponse) => boolean): void {
  const listeners = server.listeners('request') as Listener[]
  server.removeAllListeners('request')
  server.on('request', function chainControl (this: unknown, req: ClientRequest, res: ClientResponse) {
    if (control(req, res)) return
    for (const listener of listeners) listener.call(this, req, res)
  })
}

/**
 * Puts `pending` in front of a server's upgrade listeners: an upgrade that
 * brings a WebSocket ticket reaches them once the ticket is spent (the upgraded
 * socket is not read meanwhile: Node leaves it paused until someone reads).
 */
function interceptUpgrades (server: http.Server | http2.Http2SecureServer, pending: (req: IncomingMessage) => Promise<void> | undefined): void {
  const listeners = server.listeners('upgrade') as UpgradeListener[]
  server.removeAllListeners('upgrade')
  server.on('upgrade', function chainTicket (this: unknown, req: IncomingMessage, socket: Duplex, head: Buffer) {
    const wait = pending(req)
    if (wait === undefined) {
      for (const listener of listeners) listener.call(this, req, socket, head)
      return
    }
    // Node's server no longer listens for this socket's errors: nobody would, meanwhile.
    socket.on('error', () => {})
    void wait.then(() => {
      // A client gone meanwhile was never counted: nothing to record.
      if (socket.destroyed) return
      for (const listener of listeners) listener.call(this, req, socket, head)
    })
  })
}

export interface ChildServing extends Required<Pick<ChainRuntime, 'fromParent' | 'parentRedirects' | 'attachListener'>> {
  /** Open HTTP/2 sessions from the parent, and those it authenticated. */
  counts (): { h2_sessions: number, parent_sessions: number }
  /** GOAWAY to the parent's sessions (in-flight streams finish). */
  drain (): void
  destroyAll (): void
}

export interface ChildServingOptions {
  deps: ChainDeps
  auth: ChainAuth
  childOrigin: string
  tickets: TicketStore
  mulchTrust: MulchParentTrust
  /** The parent's protocol now (a Mulch parent's requests are recognised by Mulch-PSK). */
  protocol: () => 'vmfront' | 'mulch'
}

export function createChildServing (options: ChildServingOptions): ChildServing {
  const { deps, auth, childOrigin, mulchTrust, protocol } = options
  const { config, metrics } = deps
  const logger = deps.logger.child({ chain: 'child' })
  const drains: SessionDrain[] = []
  const trust = createParentTrust({ auth, childOrigin, logger, tickets: options.tickets, onFailure: () => { metrics.chainAuthFailures.inc() } })
  return {
    fromParent: (req) => trust.fromParent(req) || (protocol() === 'mulch' && mulchTrust.fromParent(req)),
    parentRedirects: () => protocol() !== 'mulch',
    attachListener (server): void {
      interceptRequests(server, trust.handleControl)
      interceptUpgrades(server, trust.upgradePending)
      if (server instanceof http.Server) {
        // The plain listener also speaks h2c, for the parent.
        const h2c = attachH2c(server, {
          maxConcurrentStreams: config.chain.maxConcurrentStreams,
          maxHeaderBytes: config.limits.maxHeaderBytes,
          firstBytesTimeoutMs: config.timeouts.requestHeadersMs,
          logger
        })
        drains.push({ count: h2c.sessions, drain: h2c.closeAll, destroyAll: h2c.destroyAll })
      } else {
        drains.push(trackServerSessions(server))
      }
    },
    counts: () => ({ h2_sessions: drains.reduce((n, d) => n + d.count(), 0), parent_sessions: trust.sessions() }),
    drain (): void {
      // GOAWAY: the parent finishes what is in flight and opens nothing new here;
      // idle sessions close now, whatever the parent does with its end.
      for (const d of drains) d.drain()
    },
    destroyAll (): void {
      for (const d of drains) d.destroyAll()
    }
  }
}
