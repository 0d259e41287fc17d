/**
 * @module proxy/upstream-errors
 * Recent upstream failures, for the status page and `/status`: a fixed ring of the
 * last events and one counter record per domain. Recording is O(1) and only runs
 * when a request has already failed; a request that succeeds never touches it.
 * Memory is bounded: `capacity` ring slots (preallocated) and at most `maxDomains`
 * domain records (the least recently failing one is forgotten first).
 */

/** One failure, as kept in the ring. */
export interface UpstreamErrorEvent {
  /** Epoch milliseconds. */
  readonly at: number
  readonly domain: string
  /** The failure reason (`connect_refused`, `upstream_timeout`…), as in `vmfront_upstream_errors_total`. */
  readonly reason: string
  /** The status the client got. */
  readonly status: number
  /** The transport error's message, cut to MESSAGE_MAX characters ('' when there was none). */
  readonly message: string
}

/** The failures of one domain since start (or since it was last forgotten). */
export interface DomainUpstreamErrors {
  readonly domain: string
  readonly count: number
  readonly last: UpstreamErrorEvent
}

export interface UpstreamErrorLog {
  /** Records one failure. `error` may come from the transport; its message is kept, cut. */
  record (domain: string, reason: string | undefined, status: number, error?: Error): void
  /** The last `limit` events, newest first. */
  recent (limit?: number): UpstreamErrorEvent[]
  /** Per-domain records, the most recently failing first. */
  byDomain (limit?: number): DomainUpstreamErrors[]
  /** One domain's record (undefined: no failure recorded). */
  lastFor (domain: string): DomainUpstreamErrors | undefined
  /** Failures recorded since start. */
  total (): number
}

export interface UpstreamErrorLogOptions {
  /** Ring slots (default 200). */
  capacity?: number
  /** Domain records kept (default 10,000; the route table bounds the names anyway). */
  maxDomains?: number
  now?: () => number
}

/** Messages may quote an address or a long TLS reason: a line on a page is enough. */
const MESSAGE_MAX = 300

interface Slot { at: number, domain: string, reason: string, status: number, message: string }
interface DomainRecord { domain: string, count: number, last: Slot }

const copy = (s: Slot): UpstreamErrorEvent => ({ at: s.at, domain: s.domain, reason: s.reason, status: s.status, message: s.message })

/** Creates an empty log. */
export function createUpstreamErrorLog (options: UpstreamErrorLogOptions = {}): UpstreamErrorLog {
  const capacity = Math.max(1, options.capacity ?? 200)
  const maxDomains = Math.max(1, options.maxDomains ?? 10_000)
  const now = options.now ?? Date.now
  const ring: Slot[] = Array.from({ length: capacity }, () => ({ at: 0, domain: '', reason: '', status: 0, message: '' }))
  let next = 0
  let count = 0
  // Map order is the eviction order: a record is moved to the end when it fails again.
  const domains = new Map<string, DomainRecord>()

  return {
    record (domain, reason, status, error) {
      const slot = ring[next]!
      next = (next + 1) % capacity
      count++
      slot.at = now()
      slot.domain = domain
      slot.reason = reason ?? 'unknown'
      slot.status = status
      const message = error?.message ?? ''
      slot.message = message.length > MESSAGE_MAX ? `${message.slice(0, MESSAGE_MAX)}…` : message
      let rec = domains.get(domain)
      if (rec === undefined) {
        if (domains.size >= maxDomains) domains.delete(domains.keys().next().value!)
        rec = { domain, count: 0, last: { ...slot } }
      } else {
        domains.delete(domain)
        Object.assign(rec.last, slot)
      }
      rec.count++
      domains.set(domain, rec)
    },
    recent (limit = capacity) {
      const n = Math.min(limit, capacity, count)
      const out: UpstreamErrorEvent[] = []
      for (let i = 1; i <= n; i++) out.push(copy(ring[(next - i + capacity) % capacity]!))
      return out
    },
    byDomain (limit = Infinity) {
      const out: DomainUpstreamErrors[] = []
      const records = [...domains.values()]
      for (let i = records.length - 1; i >= 0 && out.length < limit; i--) {
        const r = records[i]!
        out.push({ domain: r.domain, count: r.count, last: copy(r.last) })
      }
      return out
    },
    lastFor (domain) {
      const r = domains.get(domain)
      return r === undefined ? undefined : { domain: r.domain, count: r.count, last: copy(r.last) }
    },
    total: () => count
  }
}
