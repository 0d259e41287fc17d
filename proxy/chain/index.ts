/**
 * @module proxy/chain
 * Parent/child chaining (SPEC §7): the runtime main.ts starts when chain.mode is
 * "parent" or "child". This is the one entry point main.ts uses.
 */
import type { ProxyConfig } from '../config.ts'
import type { Logger } from '../log.ts'
import type { ProxyMetrics } from '../metrics.ts'
import type { RouteEntry } from '../router.ts'
import type { RouteTable } from '../route-table.ts'
import type { ChainForwardFn } from '../handler.ts'
import type { ClientRequest } from '../forward.ts'

/** What main.ts needs from the chain, whichever the mode. */
export interface ChainRuntime {
  /** Parent: the chained domains, merged into the router after the file's routes. */
  entries (): Iterable<RouteEntry>
  /** Parent: forwards a chained domain's request to its child over HTTP/2. */
  forward?: ChainForwardFn
  /** Child: whether a request comes from the authenticated parent. */
  fromParent?: (req: ClientRequest) => boolean
  /** Parent: host names of its own (the chain API's host) that may get certificates. */
  ownHosts?: () => string[]
  /** For /status and the diagnostic dump. */
  status (): unknown
  /** SIGHUP: a child re-registers its (new) routes. */
  reload (): Promise<void>
  /** Start of a shutdown, before the drain: a child deregisters from its parent. */
  beginShutdown (): Promise<void>
  /** After the drain: close the chain API, sessions and timers. */
  stop (): Promise<void>
}

export interface ChainDeps {
  config: ProxyConfig
  logger: Logger
  metrics: ProxyMetrics
  /** The proxy's current route table (a child registers these domains). */
  routeTable: () => RouteTable
  /** Called when the set of chained domains changes (parent): main rebuilds the router. */
  onEntriesChanged: () => void
}

/** Starts the chain runtime for the configured mode; undefined for mode "none". */
export async function startChain (deps: ChainDeps): Promise<ChainRuntime | undefined> {
  if (deps.config.chain.mode === 'none') return undefined
  throw new Error(`chain.mode "${deps.config.chain.mode}" is not implemented yet`)
}
