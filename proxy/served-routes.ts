/**
 * @module proxy/served-routes
 * The route table requests are served from: the route file's entries (from the
 * reloader) plus the domains chained to children (from a chain parent), merged here
 * and nowhere else. Each source hands over its part when it changes; neither calls
 * the other, and main.ts builds this before both.
 *
 * The file's map is built by the reloader as its routes arrive and kept as is, and
 * the chained entries are kept as an array, so a change of either side rebuilds the
 * router without copying 100,000 file entries in one event-loop turn.
 */
import type { Logger } from './log.ts'
import type { ProxyMetrics } from './metrics.ts'
import { Router, type RouteEntry } from './router.ts'

/** Holds the router being served; a change replaces `router` in one assignment. */
export interface RouterHolder {
  router: Router
}

export interface ServedRoutes {
  /** What the request handler reads: one router, replaced whole on every change. */
  readonly holder: RouterHolder
  /** The route file's entries by domain, as the reloader built them (never changed afterwards). */
  serveFile (entries: Map<string, RouteEntry>): void
  /** The chained domains (a chain parent's children), served after the file's. */
  serveChained (entries: Iterable<RouteEntry>): void
  /** Host names the proxy itself answers for beyond its routes (a chain API's https host). */
  setOwnHosts (hosts: readonly string[]): void
  /** Whether the name is one of those own hosts (they may get certificates). */
  isOwnHost (domain: string): boolean
}

export interface ServedRoutesOptions {
  logger: Logger
  metrics: Pick<ProxyMetrics, 'routes' | 'retainDomains'>
}

export function createServedRoutes (options: ServedRoutesOptions): ServedRoutes {
  const { logger, metrics } = options
  const holder: RouterHolder = { router: new Router([]) }
  let fileEntries = new Map<string, RouteEntry>()
  let chainedEntries: readonly RouteEntry[] = []
  let ownHosts: readonly string[] = []

  function swap (): void {
    const chained = new Map<string, RouteEntry>()
    for (const entry of chainedEntries) {
      // The file wins: an operator's own route is never taken over by a child's registration.
      if (fileEntries.has(entry.domain)) {
        logger.warn('chained domain shadowed by a route of the file', { domain: entry.domain, child: entry.chain?.child })
        continue
      }
      if (!chained.has(entry.domain)) chained.set(entry.domain, entry)
    }
    const router = new Router(fileEntries, chained)
    holder.router = router
    metrics.routes.set(router.size)
    metrics.retainDomains(router)
  }

  return {
    holder,
    serveFile (entries) {
      fileEntries = entries
      swap()
    },
    serveChained (entries) {
      chainedEntries = Array.from(entries)
      swap()
    },
    setOwnHosts (hosts) { ownHosts = [...hosts] },
    isOwnHost: (domain) => ownHosts.includes(domain)
  }
}
