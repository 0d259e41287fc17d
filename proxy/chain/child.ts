/**
 * @module proxy/chain/child
 * The child side of chaining: registers this proxy's domains with the parent at
 * start, renews every lease_ttl/3 (the parent's value, learnt from its answer),
 * re-registers on SIGHUP and deregisters at shutdown. Start-up never waits for
 * the parent: while it is unreachable the child serves its own traffic and keeps
 * retrying with backoff. On its listeners (child-serve.ts; with workers, each
 * worker's: child-worker.ts) it serves h2c to the parent (plain HTTP), answers
 * the parent's session proofs and recognises the requests of authenticated
 * sessions (parent-trust.ts), and drains the parent's HTTP/2 sessions at
 * shutdown without waiting on the parent (h2-drain.ts).
 */
import { isIP } from 'node:net'
import type { ChainDeps, ChainRuntime } from './types.ts'
import { createChainAuth } from './auth.ts'
import { ChainError, DomainConflictError, type DomainConflict } from './errors.ts'
import { createParentClient } from './parent-client.ts'
import { createTicketStore } from './parent-trust.ts'
import type { ChainDomain } from './schema.ts'
import { createMulchParentClient } from './mulch-client.ts'
import { createMulchParentTrust } from './mulch-trust.ts'
import { createChildServing } from './child-serve.ts'
import { CHAIN_OPS, createWorkerPeers, type ChildTrustState } from './shared.ts'

/** Host names of a child's own that may get certificates: an https:// child_url's (never an IP address). */
export function childOwnHosts (childUrl: string): string[] {
  const host = new URL(childUrl).hostname
  return childUrl.startsWith('https:') && host !== 'localhost' && isIP(host.replace(/^\[|\]$/g, '')) === 0 ? [host] : []
}

/** Longest a shutdown waits for the deregistration before draining. */
const SHUTDOWN_DEREGISTER_MS = 2000
/** First retry delay after a failed registration; doubles up to the cap. */
const RETRY_START_MS = 250

/**
 * Starts the child runtime; the first registration runs in the background. A
 * single process also serves the parent; a primary (deps.workers) leaves that to
 * its workers (child-worker.ts) and keeps the tickets and the parent's protocol for them.
 */
export async function startChild (deps: ChainDeps): Promise<ChainRuntime> {
  const { config, metrics } = deps
  const chain = config.chain
  const logger = deps.logger.child({ chain: 'child' })
  const auth = createChainAuth(chain.psk)
  const client = createParentClient({ parentUrl: chain.parentUrl, psk: () => auth.psk(), timeoutMs: Math.max(2000, chain.connectTimeoutMs * 2) })
  // A mulch-proxy parent (chain.parent_protocol = "mulch", or "auto" after vmfront's API got a 404).
  const mulchClient = createMulchParentClient({ parentUrl: chain.parentUrl, psk: () => auth.psk(), timeoutMs: Math.max(2000, chain.connectTimeoutMs * 2) })
  let protocol: 'vmfront' | 'mulch' = chain.parentProtocol === 'mulch' ? 'mulch' : 'vmfront'

  let leaseTtlMs = chain.leaseTtlMs
  let registered = false
  let lastRegisteredAt: number | undefined
  let nextAttemptAt: number | undefined
  let failures = 0
  let lastError: string | undefined
  let refused: DomainConflict[] = []
  let timer: NodeJS.Timeout | undefined
  let running: Promise<void> | undefined
  let again = false
  let stopping = false
  let olderParent = false
  const childOrigin = new URL(chain.childUrl).origin
  const mulchTrust = createMulchParentTrust({ auth, parentUrl: chain.parentUrl, logger, onFailure: () => { metrics.chainAuthFailures.inc() } })
  const tickets = createTicketStore()
  const workers = deps.workers?.role === 'primary' ? createWorkerPeers() : undefined
  // A primary serves no request: its workers answer the parent.
  const serving = workers === undefined ? createChildServing({ deps, auth, childOrigin, tickets, mulchTrust, protocol: () => protocol }) : undefined
  const trustState = (): ChildTrustState => ({ protocol, mulchAddresses: mulchTrust.addresses() })
  let sharedState = JSON.stringify(trustState())

  /** Tells the workers what they need to believe the parent (before it is told of us). */
  async function shareTrust (): Promise<void> {
    const state = trustState()
    const key = JSON.stringify(state)
    if (workers === undefined || key === sharedState) return
    sharedState = key
    await workers.ask(CHAIN_OPS.childState, state)
  }

  const retryCapMs = (): number => Math.min(30_000, Math.max(1000, leaseTtlMs / 3))

  function schedule (ms: number): void {
    clearTimeout(timer)
    if (stopping) return
    nextAttemptAt = Date.now() + ms
    timer = setTimeout(() => { void registerNow('renew') }, ms)
    timer.unref()
  }

  function ownDomains (): ChainDomain[] {
    // The parent applies redirect_to_https with its own https port (SPEC §5): a
    // client's https is the parent's, not ours.
    return deps.routeTable().routes.map((r) => ({
      domain: r.domain,
      ...(r.rateProfile === undefined ? {} : { rateProfile: r.rateProfile }),
      ...(r.redirectToHttps && !olderParent ? { redirectToHttps: true as const } : {})
    }))
  }

  /** An older parent refuses the redirect_to_https key (400 naming it). */
  function refusesRedirectKey (err: unknown): boolean {
    return err instanceof ChainError && err.status === 400 && err.message.includes('.redirect_to_https: is not a known key')
  }

  /** An "auto" parent that answers 404 to vmfront's API is a mulch-proxy. */
  function isMulchParent (err: unknown): boolean {
    return chain.parentProtocol === 'auto' && protocol === 'vmfront' && err instanceof ChainError && err.status === 404
  }

  /**
   * Registration with a mulch-proxy parent: once per start and SIGHUP (no lease,
   * as mulch-proxy's child), retried with backoff only while it fails. Domains
   * the parent reports owned elsewhere (a vmfront parent answers 409 and keeps
   * the rest; mulchd asks /domains/conflicts first) are reported in /status.
   */
  async function attemptMulch (reason: string): Promise<void> {
    const domains = ownDomains().map((d) => (d.rateProfile === undefined ? { domain: d.domain } : { domain: d.domain, rateProfile: d.rateProfile }))
    try {
      await mulchTrust.refresh()
      await shareTrust()
      refused = []
      try {
        await mulchClient.register(childOrigin, domains)
      } catch (err) {
        if (!(err instanceof ChainError && err.status === 409)) throw err
        // Registered, except the domains owned elsewhere: ask which.
        refused = await mulchClient.check(childOrigin, domains.map((d) => d.domain))
        logger.error('chain domains refused by the Mulch parent: owned elsewhere', { name: chain.name, conflicts: refused })
      }
      const first = !registered || failures > 0
      registered = true
      lastRegisteredAt = Date.now()
      failures = 0
      lastError = undefined
      nextAttemptAt = undefined
      const log = first || reason === 'SIGHUP' || reason === 'start' ? logger.info : logger.debug
      log('chain registered with parent', { parent: chain.parentUrl, protocol: 'mulch', child_url: childOrigin, reason, domains: domains.length - refused.length })
    } catch (err) {
      failures++
      lastError = (err as Error).message
      const delay = Math.min(30_000, RETRY_START_MS * 2 ** Math.min(failures - 1, 16)) * (0.8 + Math.random() * 0.4)
      if (failures === 1 || failures % 10 === 0) {
        logger.warn('chain registration failed: retrying', { parent: chain.parentUrl, protocol: 'mulch', reason, failures, retry_ms: Math.round(delay), err })
      }
      schedule(delay)
    }
  }

  async function attempt (reason: string): Promise<void> {
    if (protocol === 'mulch') {
      await attemptMulch(reason)
      return
    }
    let domains = ownDomains()
    refused = []
    for (let tries = 0; tries < 3; tries++) {
      try {
        const answer = await client.register(chain.name, childOrigin, domains)
        const first = !registered || failures > 0
        registered = true
        leaseTtlMs = answer.leaseTtlMs
        lastRegisteredAt = Date.now()
        failures = 0
        lastError = undefined
        const log = first || reason === 'SIGHUP' || reason === 'start' ? logger.info : logger.debug
        log('chain registered with parent', { parent: chain.parentUrl, name: chain.name, child_url: childOrigin, reason, domains: answer.domains.length, lease_ttl_ms: leaseTtlMs })
        schedule(Math.max(100, Math.floor(leaseTtlMs / 3)))
        return
      } catch (err) {
        if (refusesRedirectKey(err) && !olderParent) {
          // Keep registering (rolling upgrades): that parent will not apply our redirects.
          olderParent = true
          logger.warn('chain parent is older and does not take redirect_to_https: registering without it (upgrade the parent)', { parent: chain.parentUrl })
          domains = domains.map((d) => (d.rateProfile === undefined ? { domain: d.domain } : { domain: d.domain, rateProfile: d.rateProfile }))
          continue
        }
        if (isMulchParent(err)) {
          protocol = 'mulch'
          logger.info('chain parent answers 404 to vmfront\'s API: registering with mulch-proxy\'s protocol (set chain.parent_protocol to skip the probe)', { parent: chain.parentUrl })
          await attemptMulch(reason)
          return
        }
        if (err instanceof DomainConflictError && refused.length === 0) {
          // Keep the lease on the domains nobody else owns; report the others.
          refused = [...err.conflicts]
          logger.error('chain domains refused by the parent: owned elsewhere', { name: chain.name, conflicts: refused })
          const taken = new Set(refused.map((c) => c.domain))
          domains = domains.filter((d) => !taken.has(d.domain))
          continue
        }
        failures++
        lastError = (err as Error).message
        const delay = Math.min(retryCapMs(), RETRY_START_MS * 2 ** Math.min(failures - 1, 16)) * (0.8 + Math.random() * 0.4)
        // The first failure, then one line in ten: an unreachable parent must not flood the log.
        if (failures === 1 || failures % 10 === 0) {
          logger.warn('chain registration failed: retrying', { parent: chain.parentUrl, name: chain.name, reason, failures, retry_ms: Math.round(delay), err })
        }
        schedule(delay)
        return
      }
    }
  }

  /** Registers now; one attempt at a time, a request meanwhile runs once more after it. */
  function registerNow (reason: string): Promise<void> {
    if (stopping) return Promise.resolve()
    if (running !== undefined) {
      again = true
      return running
    }
    clearTimeout(timer)
    running = attempt(reason).finally(() => {
      running = undefined
      if (again && !stopping) {
        again = false
        void registerNow(reason)
      }
    })
    return running
  }

  const target = new URL(chain.childUrl)
  if (target.protocol === 'http:' && config.listen.http === undefined) {
    logger.warn('chain child_url is http:// but listen.http is disabled: h2c is served only there, so the parent cannot reach this child', { child_url: childOrigin })
  } else if (target.protocol === 'http:' && config.listen.http !== undefined && Number(target.port || 80) !== config.listen.http.port && config.listen.http.port !== 0) {
    logger.info('chain child_url port differs from listen.http (fine behind port forwarding)', { child_url: childOrigin, listen_http: config.listen.http.port })
  }

  // Not awaited: the proxy serves its own traffic whatever the parent does.
  setImmediate(() => { void registerNow('start') })

  const statusOf = (served: Record<string, unknown>): Record<string, unknown> => ({
    role: 'child',
    name: chain.name,
    parent_url: chain.parentUrl,
    parent_protocol: protocol,
    ...(protocol === 'mulch' ? { parent_addresses: mulchTrust.addresses() } : {}),
    child_url: childOrigin,
    registered,
    lease_ttl_seconds: leaseTtlMs / 1000,
    last_registered_at: lastRegisteredAt === undefined ? undefined : new Date(lastRegisteredAt).toISOString(),
    next_attempt_at: nextAttemptAt === undefined ? undefined : new Date(nextAttemptAt).toISOString(),
    failures,
    last_error: lastError,
    refused_domains: refused,
    ...served,
    tickets: tickets.size()
  })
  /** The registration is the primary's; the parent's sessions are each worker's: summed, and listed under `workers`. */
  const workersStatus = async (): Promise<Record<string, unknown>> => {
    const answers = await workers!.ask<{ h2_sessions: number, parent_sessions: number }>(CHAIN_OPS.status)
    return statusOf({
      h2_sessions: answers.reduce((n, a) => n + a.value.h2_sessions, 0),
      parent_sessions: answers.reduce((n, a) => n + a.value.parent_sessions, 0),
      workers: answers.map((a) => ({ worker: a.slot, ...a.value }))
    })
  }

  return {
    entries: () => [],
    // An https:// child_url is served by the https listener: its host needs a certificate.
    ownHosts: () => childOwnHosts(chain.childUrl),
    ...(serving === undefined ? {} : { fromParent: serving.fromParent, parentRedirects: serving.parentRedirects, attachListener: serving.attachListener }),
    status: () => serving !== undefined ? statusOf(serving.counts()) : workersStatus(),
    attachWorker (peer, slot) {
      peer.handle(CHAIN_OPS.childStateNow, trustState)
      // One store for every worker: the upgrade may reach another worker than the ticket's session.
      peer.handle(CHAIN_OPS.ticketIssue, async (body) => (await tickets.issue((body as { peer: string }).peer)) ?? null)
      peer.handle(CHAIN_OPS.ticketTake, async (body) => {
        const { ticket, peer: from } = body as { ticket: string, peer: string }
        return await tickets.take(ticket, from)
      })
      return workers?.add(slot, peer) ?? (() => {})
    },
    // The registration's Bearer and the session proofs it checks (the keepalive is the parent's).
    applySettings: (settings) => { auth.rekey(settings.psk) },
    reload: () => registerNow('SIGHUP'),
    async beginShutdown (): Promise<void> {
      stopping = true
      clearTimeout(timer)
      // A slow parent must not hold the exit: the lease drops us anyway.
      let bound: NodeJS.Timeout | undefined
      const late = new Promise<'late'>((resolve) => { bound = setTimeout(() => { resolve('late') }, SHUTDOWN_DEREGISTER_MS) })
      const deregistered = (async (): Promise<void> => {
        await running
        // A mulch-proxy parent has no deregistration (its children never send one).
        if (!registered || protocol === 'mulch') return
        try {
          await client.deregister(chain.name)
          logger.info('chain deregistered from parent', { parent: chain.parentUrl, name: chain.name })
        } catch (err) {
          logger.warn('chain deregistration failed: the parent drops us when the lease ends', { parent: chain.parentUrl, name: chain.name, err })
        }
        registered = false
      })()
      if (await Promise.race([deregistered, late]) === 'late') {
        logger.warn('chain deregistration took too long: not waiting (the parent drops us when the lease ends)', { parent: chain.parentUrl, name: chain.name, waited_ms: SHUTDOWN_DEREGISTER_MS })
      }
      clearTimeout(bound)
      serving?.drain()
    },
    async stop (): Promise<void> {
      stopping = true
      clearTimeout(timer)
      serving?.destroyAll()
      await client.close()
      await mulchClient.close()
    }
  }
}
