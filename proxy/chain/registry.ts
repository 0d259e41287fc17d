/**
 * @module proxy/chain/registry
 * The parent's table of chain children and the domains each one owns, with
 * leases. Pure and synchronous: no timers, no I/O (the parent runtime drives the
 * clock, persistence and sessions), so every rule is testable with plain numbers.
 *
 * Rules:
 * - a child is identified by its name; registering again replaces its URL and
 *   domain list and renews its lease;
 * - a domain owned by another child, or by the parent's own route file, is a
 *   conflict, and a registration with any conflict changes nothing (all or
 *   nothing) — except that a domain this child already holds is never a conflict,
 *   so a renewal cannot fail because the parent's file gained one of its domains
 *   later (the file's route wins in the router, and that is logged there);
 * - a child whose lease has run out is dropped by `sweep`;
 * - at most `maxChildren` children: a new name past it is refused
 *   (CHAIN_CHILDREN_FULL, 503); known children still renew and move;
 * - mulch-proxy children (protocol "mulch", SPEC §10) share the one namespace.
 *   Their name is their ForwardTo origin and they have no lease (never swept):
 *   they stay until an operator forgets them, or until a Mulch child on the same
 *   host (a Mulch parent's notion of "the same owner") registers their domains
 *   under another ForwardTo: those domains move, and a child left with none goes.
 */
import { ChainError, DomainConflictError, type DomainConflict } from './errors.ts'
import type { ChainDomain, RegisterRequest } from './schema.ts'

/** The owner reported for a domain of the parent's own route file. */
export const PARENT_OWNER = '(parent)'

/** One registered child. Replaced whole on every change (never mutated). */
export interface ChildRecord {
  readonly name: string
  /** The origin the parent forwards to (http:// → h2c, https:// → h2 over TLS). */
  readonly url: string
  readonly domains: readonly ChainDomain[]
  /** First registration under this name and URL (ms since epoch). */
  readonly registeredAt: number
  readonly renewedAt: number
  /** Infinity for a Mulch child (no lease). */
  readonly expiresAt: number
  /** Set for a mulch-proxy child (HTTP/1.1 forwarding with Mulch-PSK); absent for vmfront's own. */
  readonly protocol?: 'mulch'
}

/** What a registration changed, for the runtime to act on. */
export interface RegisterOutcome {
  readonly record: ChildRecord
  /** The child's previous record, when it had one. */
  readonly previous: ChildRecord | undefined
  /** True when the URL or the domain set changed (routes must be rebuilt and saved). */
  readonly changed: boolean
  /**
   * Mulch children whose domains this (Mulch) registration took over (same host,
   * another ForwardTo), with their new record, or undefined when none is left.
   */
  readonly moved?: ReadonlyArray<{ readonly from: ChildRecord, readonly now: ChildRecord | undefined }>
}

export interface ChildRegistry {
  /**
   * Registers or renews; throws DomainConflictError (and changes nothing) on a
   * conflict, and ChainError CHAIN_CHILDREN_FULL for a new child past `maxChildren`.
   */
  register (request: RegisterRequest, now: number): RegisterOutcome
  /** Removes a child; returns its record, or undefined if it was unknown. */
  deregister (name: string): ChildRecord | undefined
  /**
   * The conflicts `name` would meet registering `domains` (empty when none);
   * `mulchUrl`: asked for a Mulch child registering from that ForwardTo.
   */
  conflicts (name: string, domains: readonly string[], mulchUrl?: string): DomainConflict[]
  /** Removes a child by name, or every child whose URL is `nameOrUrl` (an origin); returns them. */
  forget (nameOrUrl: string): ChildRecord[]
  /** Drops every child whose lease ended at or before `now`; returns them. */
  sweep (now: number): ChildRecord[]
  /**
   * Restores saved children with fresh leases (start-up); conflicting domains are
   * skipped, and so are children past `maxChildren`.
   */
  restore (records: readonly Pick<ChildRecord, 'name' | 'url' | 'domains' | 'registeredAt' | 'protocol'>[], now: number): ChildRecord[]
  get (name: string): ChildRecord | undefined
  /** Children sorted by name. */
  children (): ChildRecord[]
  readonly size: number
}

export interface RegistryOptions {
  leaseTtlMs: number
  /** Whether the parent's own route file serves a domain. */
  parentServes: (domain: string) => boolean
  /** Most children at once (default: unlimited). */
  maxChildren?: number
}

function sameDomains (a: readonly ChainDomain[], b: readonly ChainDomain[]): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) {
    if (a[i].domain !== b[i].domain || a[i].rateProfile !== b[i].rateProfile || a[i].redirectToHttps !== b[i].redirectToHttps) return false
  }
  return true
}

/** Creates an empty registry. */
export function createChildRegistry (options: RegistryOptions): ChildRegistry {
  const maxChildren = options.maxChildren ?? Infinity
  const children = new Map<string, ChildRecord>()
  const owners = new Map<string, string>()

  /** A Mulch child registering from `url` may take the domains of a Mulch child on the same host (as mulch-proxy). */
  function sameMulchHost (owner: string, url: string | undefined): boolean {
    if (url === undefined) return false
    const record = children.get(owner)
    return record?.protocol === 'mulch' && new URL(record.url).hostname === new URL(url).hostname
  }

  function conflicts (name: string, domains: readonly string[], mulchUrl?: string): DomainConflict[] {
    const found: DomainConflict[] = []
    for (const domain of domains) {
      const owner = owners.get(domain)
      if (owner === name) continue
      if (owner !== undefined) {
        if (!sameMulchHost(owner, mulchUrl)) found.push({ domain, owner })
      }
      else if (options.parentServes(domain)) found.push({ domain, owner: PARENT_OWNER })
    }
    return found
  }

  function put (record: ChildRecord): void {
    const previous = children.get(record.name)
    if (previous !== undefined) for (const d of previous.domains) owners.delete(d.domain)
    children.set(record.name, record)
    for (const d of record.domains) owners.set(d.domain, record.name)
  }

  function remove (name: string): ChildRecord | undefined {
    const record = children.get(name)
    if (record === undefined) return undefined
    children.delete(name)
    for (const d of record.domains) {
      if (owners.get(d.domain) === name) owners.delete(d.domain)
    }
    return record
  }

  return {
    register (request, now): RegisterOutcome {
      if (children.size >= maxChildren && !children.has(request.name)) {
        throw new ChainError('CHAIN_CHILDREN_FULL', `this parent already has ${children.size} children, its limit (chain.max_children): "${request.name}" is not registered`, { status: 503 })
      }
      const mulch = request.protocol === 'mulch'
      const found = conflicts(request.name, request.domains.map((d) => d.domain), mulch ? request.childUrl : undefined)
      if (found.length > 0) throw new DomainConflictError(found)
      // Only a Mulch registration gets here with another child's domains: take them over.
      const losers = new Map<string, ChildRecord>()
      for (const d of request.domains) {
        const owner = owners.get(d.domain)
        if (owner !== undefined && owner !== request.name) losers.set(owner, children.get(owner)!)
      }
      const moved: Array<{ from: ChildRecord, now: ChildRecord | undefined }> = []
      const taken = new Set(request.domains.map((d) => d.domain))
      for (const from of losers.values()) {
        const kept = from.domains.filter((d) => !taken.has(d.domain))
        remove(from.name)
        let left: ChildRecord | undefined
        if (kept.length > 0) {
          left = Object.freeze({ ...from, domains: Object.freeze(kept) })
          put(left)
        }
        moved.push({ from, now: left })
      }
      const previous = children.get(request.name)
      const domains = [...request.domains].sort((a, b) => (a.domain < b.domain ? -1 : a.domain > b.domain ? 1 : 0))
      const sameUrl = previous !== undefined && previous.url === request.childUrl
      const changed = !sameUrl || !sameDomains(previous.domains, domains)
      const record: ChildRecord = Object.freeze({
        name: request.name,
        url: request.childUrl,
        domains: changed ? Object.freeze(domains.map((d) => Object.freeze({ ...d }))) : previous!.domains,
        registeredAt: sameUrl ? previous.registeredAt : now,
        renewedAt: now,
        expiresAt: mulch ? Infinity : now + options.leaseTtlMs,
        ...(mulch ? { protocol: 'mulch' as const } : {})
      })
      put(record)
      return moved.length > 0 ? { record, previous, changed, moved } : { record, previous, changed }
    },
    deregister: remove,
    conflicts,
    forget (nameOrUrl): ChildRecord[] {
      const byName = remove(nameOrUrl)
      if (byName !== undefined) return [byName]
      let origin: string
      try {
        origin = new URL(nameOrUrl).origin
      } catch {
        return []
      }
      const matched = [...children.values()].filter((c) => c.url === origin)
      for (const c of matched) remove(c.name)
      return matched
    },
    sweep (now): ChildRecord[] {
      const expired: ChildRecord[] = []
      for (const record of children.values()) {
        if (record.expiresAt <= now) expired.push(record)
      }
      for (const record of expired) remove(record.name)
      return expired
    },
    restore (records, now): ChildRecord[] {
      const restored: ChildRecord[] = []
      for (const saved of records) {
        if (children.has(saved.name) || children.size >= maxChildren) continue
        const free = saved.domains.filter((d) => !owners.has(d.domain))
        const record: ChildRecord = Object.freeze({
          name: saved.name,
          url: saved.url,
          domains: Object.freeze(free.map((d) => Object.freeze({ ...d }))),
          registeredAt: saved.registeredAt,
          renewedAt: now,
          expiresAt: saved.protocol === 'mulch' ? Infinity : now + options.leaseTtlMs,
          ...(saved.protocol === 'mulch' ? { protocol: 'mulch' as const } : {})
        })
        put(record)
        restored.push(record)
      }
      return restored
    },
    get: (name) => children.get(name),
    children: () => [...children.values()].sort((a, b) => (a.name < b.name ? -1 : 1)),
    get size () { return children.size }
  }
}
