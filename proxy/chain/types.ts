/**
 * @module proxy/chain/types
 * What the chain runtime and the rest of the proxy say to each other: what main.ts
 * gives the chain (ChainDeps), what the chain gives back (ChainRuntime), and the
 * forwarding functions the request handler calls for chained domains. In a module
 * of their own, so parent.ts and child.ts do not import the index that imports them.
 */
import type http from 'node:http'
import type http2 from 'node:http2'
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { SecureContext } from 'node:tls'
import type { ProxyConfig } from '../config.ts'
import type { Logger } from '../log.ts'
import type { ProxyMetrics } from '../metrics.ts'
import type { RouteEntry } from '../router.ts'
import type { RouteTable } from '../route-table.ts'
import type { ServedRoutes } from '../served-routes.ts'
import type { ClientInfo, ClientRequest, ClientResponse, ForwardOutcome, ForwardStats, UpstreamFailure } from '../http-types.ts'
import type { IpcPeer } from '../worker-ipc.ts'
import type { ChainWorkers } from './shared.ts'

/** Forwards a chained domain's request to its child (parent mode); `stats` as the forwarder's. */
export type ChainForwardFn = (req: ClientRequest, res: ClientResponse, entry: RouteEntry, client: ClientInfo, onError: (outcome: ForwardOutcome) => void, stats?: ForwardStats) => void

/** Forwards a WebSocket (HTTP/1.1 upgrade) for a chained domain to its child (parent mode); `done` is called once. */
export type ChainUpgradeFn = (req: IncomingMessage, socket: Duplex, head: Buffer, entry: RouteEntry, client: ClientInfo, done: (status: number, failure?: UpstreamFailure) => void) => void

/** What main.ts needs from the chain, whichever the mode. */
export interface ChainRuntime {
  /** Parent: the chained domains (also handed to ChainDeps.served whenever they change). */
  entries (): Iterable<RouteEntry>
  /** Parent: forwards a chained domain's request to its child over HTTP/2. */
  forward?: ChainForwardFn
  /** Parent: forwards a WebSocket (HTTP/1.1 upgrade) for a chained domain to its child. */
  upgrade?: ChainUpgradeFn
  /**
   * Host names of its own that may get certificates: a parent's https:// chain
   * API host, a child's https:// child_url host (IP addresses never).
   */
  ownHosts?: () => string[]
  /**
   * Child: whether a request comes from the authenticated parent: an HTTP/2
   * session the parent proved itself on, or an upgrade with a live one-time ticket.
   */
  fromParent?: (req: ClientRequest) => boolean
  /** Child: whether the parent applies redirect_to_https (a mulch-proxy parent does not). */
  parentRedirects?: () => boolean
  /**
   * Child: called with each listener's server before it listens. The chain answers
   * its reserved paths there (the parent's session proof), tracks the HTTP/2
   * sessions for the drain, and on the plain HTTP listener also accepts h2c
   * (HTTP/2 prior knowledge) from the parent.
   */
  attachListener?: (server: http.Server | http2.Http2SecureServer) => void
  /**
   * Parent: removes a child now, by name or by URL (a Mulch child has no lease:
   * this is how it goes). Resolves with the children removed (empty: none
   * matched) once their domains are served no more (by any worker).
   */
  forget?: (nameOrUrl: string) => Promise<Array<{ name: string, url: string, domains: string[], protocol?: string }>>
  /**
   * For /status and the diagnostic dump. A primary's is a Promise: it asks its
   * workers for their part (a parent's sessions, a child's parent sessions).
   */
  status (): unknown
  /**
   * Primary (ChainDeps.workers): wires a worker's IPC channel to the chain (what
   * it serves, the tickets, the figures /status asks for); returns what unwires it.
   */
  attachWorker?: (peer: IpcPeer, slot: number) => () => void
  /** SIGHUP: a child re-registers its (new) routes. */
  reload (): Promise<void>
  /**
   * A SIGHUP changed what of the chain can change live (SPEC §12): the PSK (checks and
   * proofs from now on; sessions already proven stay up) and the keepalive (sessions
   * opened from now on). Called before `reload`, so a child re-registers with the new PSK.
   */
  applySettings (settings: ChainLiveSettings): void
  /** Start of a shutdown, before the drain: a child deregisters from its parent. */
  beginShutdown (): Promise<void>
  /** After the drain: close the chain API, sessions and timers. */
  stop (): Promise<void>
}

/** The chain settings a SIGHUP applies without a restart. */
export interface ChainLiveSettings {
  psk: string
  pingIntervalMs: number
  pingTimeoutMs: number
}

export interface ChainDeps {
  config: ProxyConfig
  logger: Logger
  metrics: ProxyMetrics
  /** The proxy's current route table (a child registers these domains). */
  routeTable: () => RouteTable
  /** Where a parent's chained domains go into service (served-routes.ts), each time they change. */
  served: Pick<ServedRoutes, 'serveChained'>
  /** Whether a rate profile exists now (a chained domain's unknown profile is served as "default"). */
  hasProfile: (name: string) => boolean
  /**
   * Parent with an https:// parent_url: the chain API's certificate (from the
   * certificate manager). Without it such a parent does not start its API.
   */
  tls?: { key: string, cert: string, SNICallback: (servername: string, cb: (err: Error | null, ctx?: SecureContext) => void) => void }
  /** With workers (SPEC §12): this process's part, see proxy/chain/shared.ts. Absent: a single process. */
  workers?: ChainWorkers
}
