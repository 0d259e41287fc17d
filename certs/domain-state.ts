/**
 * @module certs/domain-state
 * The manager's internal state shared by its parts (orders, maintenance, handshake): which
 * domains it manages, their renewal plan and their failure backoff.
 */
import type { RenewalWindow } from './ari.ts'
import type { CachedCert, CertCache } from './cache.ts'
import type { CertLogger, ResolvedCertOptions } from './config.ts'
import type { Issuer } from './issuer.ts'
import type { SiteStore } from './site-store.ts'
import type { CertificateEvent, OrderEvent } from './types.ts'

/** Renewal plan and failure record of one ACME-managed domain. */
export interface DomainState {
  /** When to renew the current ACME certificate (unset while there is none). */
  renewAt: Date | undefined
  /** Next ARI lookup (epoch ms); 0 = as soon as possible. */
  ariCheckAt: number
  ariWindow: RenewalWindow | undefined
  /** Consecutive failed orders. */
  failures: number
  /** No order before this (epoch ms): the backoff after failures. */
  retryAt: number
  lastError: Error | undefined
  lastErrorAt: Date | undefined
}

/** A fresh state: no plan, no failures. */
export function newDomainState (): DomainState {
  return { renewAt: undefined, ariCheckAt: 0, ariWindow: undefined, failures: 0, retryAt: 0, lastError: undefined, lastErrorAt: undefined }
}

/** What the manager's parts share. One instance per manager; nothing module-level. */
export interface ManagerContext {
  readonly opts: ResolvedCertOptions
  readonly log: CertLogger
  readonly cache: CertCache
  readonly issuer: Issuer | undefined
  readonly sites: SiteStore
  /** ACME-managed domains: those with an ACME certificate and those waiting for one. */
  readonly domains: Map<string, DomainState>
  /** The policy, made total: a throwing policy counts as "no" (and is logged). */
  allowed (domain: string): boolean
  stopped (): boolean
  random (): number
  /** Runs `mutate`, then emits `certificate` events for the domains whose served certificate changed. */
  changeCertificates (domains: Iterable<string>, mutate: () => void): void
  emitOrder (event: OrderEvent): void
}

/** The state of `domain`, created when missing. */
export function stateOf (ctx: ManagerContext, domain: string): DomainState {
  let st = ctx.domains.get(domain)
  if (st === undefined) {
    st = newDomainState()
    ctx.domains.set(domain, st)
  }
  return st
}

/** Emits `certificate` events for the domains whose served certificate changed. */
export function diffServed (before: Map<string, CachedCert | undefined>, served: (d: string) => CachedCert | undefined, emit: (e: CertificateEvent) => void): void {
  for (const [domain, old] of before) {
    const now = served(domain)
    if (now === old) continue
    if (now !== undefined) emit({ domain, notAfter: now.info.notAfter, source: now.source, removed: false })
    else if (old !== undefined) emit({ domain, notAfter: old.info.notAfter, source: old.source, removed: true })
  }
}
