/**
 * @module proxy/router
 * The immutable host → route lookup the request path reads. A new Router is built
 * for every route table (and every change of chained domains) and swapped in whole,
 * so a request sees one consistent table from start to end.
 */
import type { Route } from './route-table.ts'

/** Where a chained domain goes: a child proxy registered with this parent. */
export interface ChainTarget {
  readonly child: string
  readonly url: string
}

/** One entry of the lookup: a route of the file, or a domain chained to a child. */
export interface RouteEntry {
  readonly domain: string
  readonly route: Route
  /** Set when the domain belongs to a chain child (parent mode). */
  readonly chain?: ChainTarget
  /** The resolved rate profile name (unknown names already fell back to "default"). */
  readonly profile: string
}

/** Lower-cases a Host header and strips its port and trailing dot. */
export function normalizeHost (host: string | undefined): string {
  if (host === undefined || host === '') return ''
  let end = host.length
  if (host.charCodeAt(0) === 91 /* [ */) {
    const close = host.indexOf(']')
    return close === -1 ? host.toLowerCase() : host.slice(0, close + 1).toLowerCase()
  }
  const colon = host.lastIndexOf(':')
  if (colon !== -1) end = colon
  if (host.charCodeAt(end - 1) === 46 /* . */) end--
  const bare = end === host.length ? host : host.slice(0, end)
  return bare.toLowerCase()
}

/**
 * An immutable lookup table: the route file's entries, then the domains chained to
 * children (which never shadow a route of the file). The two are kept apart so a
 * change of chained domains reuses the file's map, of maybe 100,000 entries, as is.
 */
export class Router {
  /** The route file's entries by domain. */
  readonly entries: ReadonlyMap<string, RouteEntry>
  /** Chained domains that no route of the file shadows. */
  readonly chained: ReadonlyMap<string, RouteEntry>
  readonly size: number

  /**
   * A Map (domain → entry) is adopted, not copied, and must not be changed
   * afterwards: a reload builds it a slice at a time, and copying 100,000 entries
   * in one go would block the event loop for tens of milliseconds.
   */
  constructor (entries: Iterable<RouteEntry> | ReadonlyMap<string, RouteEntry>, chained: ReadonlyMap<string, RouteEntry> = new Map()) {
    if (entries instanceof Map) {
      this.entries = entries
    } else {
      const map = new Map<string, RouteEntry>()
      for (const entry of entries as Iterable<RouteEntry>) map.set(entry.domain, entry)
      this.entries = map
    }
    this.chained = chained
    this.size = this.entries.size + chained.size
  }

  /** Finds the entry for a Host header value; undefined for an unknown host. */
  match (hostHeader: string | undefined): RouteEntry | undefined {
    if (hostHeader === undefined) return undefined
    // Fast path: most clients send the bare lower-case name.
    const exact = this.get(hostHeader)
    if (exact !== undefined) return exact
    const host = normalizeHost(hostHeader)
    return host === hostHeader ? undefined : this.get(host)
  }

  has (domain: string): boolean {
    return this.entries.has(domain) || this.chained.has(domain)
  }

  private get (domain: string): RouteEntry | undefined {
    return this.entries.get(domain) ?? (this.chained.size === 0 ? undefined : this.chained.get(domain))
  }
}
