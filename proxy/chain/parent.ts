/**
 * @module proxy/chain/parent
 * The parent side of chaining: the registry of children with its lease sweep and
 * its file in data_dir, the chain API server on parent_url, the router entries of
 * chained domains, and one session pool per child for forwarding.
 */
import http from 'node:http'
import https from 'node:https'
import { isIP } from 'node:net'
import { join } from 'node:path'
import { getRequestListener } from '@hono/node-server'
import type { RouteEntry } from '../router.ts'
import type { RouteTable } from '../route-table.ts'
import type { ChainDeps, ChainRuntime } from './types.ts'
import { createChainApi } from './api.ts'
import type { ChainDomain, RegisterRequest } from './schema.ts'
import { createChainAuth } from './auth.ts'
import { ChainError, DomainConflictError } from './errors.ts'
import type { PoolStatus } from './h2-pool.ts'
import { createRegistrationStore } from './persist.ts'
import { createChildRegistry, type ChildRecord } from './registry.ts'
import { addMulchRoutes } from './mulch-api.ts'
import { createChildForwarding, entriesOf, IDLE_SESSION } from './parent-forward.ts'
import { CHAIN_OPS, createWorkerPeers, type ChildSnapshot, type ChildrenSnapshot } from './shared.ts'
import { createLogThrottle } from '../log-throttle.ts'
import { TLS_SERVER_POLICY } from '../tls-policy.ts'

/** The registrations file in data_dir. */
export const REGISTRATIONS_FILE = 'chain-children.json'
/** Least time between two writes of the registrations file. */
const SAVE_INTERVAL_MS = 500
/** Router swaps are spaced this many times their own duration apart (see changed()). */
const SWAP_SPACING = 10

/** Where the chain API listens: parent_url's host when it is an address, else every interface. */
export function apiListenAddress (parentUrl: string): { host: string, port: number, tls: boolean } {
  const url = new URL(parentUrl)
  const tls = url.protocol === 'https:'
  const port = url.port === '' ? (tls ? 443 : 80) : Number(url.port)
  const bare = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname
  // A DNS name (the parent's public name) is served on all interfaces: binding
  // to whatever it resolves to at start would break on an address change.
  const literal = /^[0-9.]+$/.test(bare) || bare.includes(':') || bare === 'localhost'
  return { host: literal ? bare : '0.0.0.0', port, tls }
}

/** Host names of a parent's own that may get certificates: its https:// chain API's (never an IP address). */
export function parentOwnHosts (parentUrl: string): string[] {
  const url = new URL(parentUrl)
  const host = url.hostname
  return url.protocol === 'https:' && host !== 'localhost' && isIP(host.replace(/^\[|\]$/g, '')) === 0 ? [host] : []
}

/** A child's sessions over every worker: each worker's, and their sum for the status page's cell. */
function sessionsOverWorkers (perWorker: ReadonlyArray<{ worker: number, status: Partial<PoolStatus> }>): Record<string, unknown> {
  const list = perWorker.map(({ worker, status }) => ({ worker, ...status }))
  const sum = (key: 'sessions' | 'streams' | 'resets'): number => list.reduce((n, s) => n + (s[key] ?? 0), 0)
  const first = <K extends keyof PoolStatus>(key: K): PoolStatus[K] | undefined => list.find((s) => s[key] !== undefined)?.[key] as PoolStatus[K] | undefined
  const downSince = list.map((s) => s.down_since).filter((d): d is string => d !== undefined).sort()[0]
  return {
    // Down when a worker finds it down: some of its requests are refused.
    health: list.some((s) => s.health === 'down') ? 'down' : 'up',
    connected: list.some((s) => s.connected === true),
    sessions: sum('sessions'),
    streams: sum('streams'),
    resets: sum('resets'),
    last_ping_rtt_ms: first('last_ping_rtt_ms'),
    last_reset_reason: first('last_reset_reason'),
    last_failure: first('last_failure'),
    down_since: downSince,
    authenticated: list.every((s) => s.authenticated !== false),
    workers: list
  }
}

/**
 * Starts the parent runtime: restores saved children, then listens for the API.
 * A single process also forwards to its children; a primary (deps.workers)
 * publishes them to its workers instead, which forward (parent-worker.ts).
 */
export async function startParent (deps: ChainDeps): Promise<ChainRuntime> {
  const { config, logger: baseLogger, metrics } = deps
  const chain = config.chain
  const logger = baseLogger.child({ chain: 'parent' })
  const auth = createChainAuth(chain.psk)
  // What /status says of the keepalive (a SIGHUP may change it: applySettings).
  let keepalive = { pingIntervalMs: chain.pingIntervalMs, pingTimeoutMs: chain.pingTimeoutMs }
  const store = createRegistrationStore(join(config.dataDir, REGISTRATIONS_FILE), logger, { minIntervalMs: SAVE_INTERVAL_MS })
  const workers = deps.workers?.role === 'primary' ? createWorkerPeers() : undefined

  // The parent's own domains, recomputed only when the route table object changes.
  let seenTable: RouteTable | undefined
  let ownDomains = new Set<string>()
  const parentServes = (domain: string): boolean => {
    const table = deps.routeTable()
    if (table !== seenTable) {
      seenTable = table
      ownDomains = new Set(table.routes.map((r) => r.domain))
    }
    return ownDomains.has(domain)
  }
  const refusedLog = createLogThrottle(10_000)
  const registry = createChildRegistry({ leaseTtlMs: chain.leaseTtlMs, parentServes, maxChildren: chain.maxChildren })
  // A primary serves no request: its workers hold the sessions.
  const forwarding = workers === undefined ? createChildForwarding({ config, logger, metrics, auth, lookup: (name) => registry.get(name) }) : undefined
  const entriesByChild = new Map<string, readonly RouteEntry[]>()
  function * chainedEntries (): Iterable<RouteEntry> {
    for (const list of entriesByChild.values()) yield * list
  }

  /** A child is gone or moved: its sessions close (a worker closes its own when it learns of it). */
  function dropPool (name: string, force: boolean): void {
    forwarding?.drop(name, force)
  }

  /** Keeps a child's entries in step with the registry: O(its domains), not O(all). */
  function updateEntries (child: ChildRecord, present: boolean): void {
    if (present) entriesByChild.set(child.name, entriesOf(child, deps.hasProfile))
    else entriesByChild.delete(child.name)
  }

  // Swapping the router is O(every route), so changes close together share one
  // swap: a lone change applies at once (before the next request is read), and
  // then swaps are spaced SWAP_SPACING times their own duration apart, so a burst
  // of registrations spends at most ~1/SWAP_SPACING of the time swapping however
  // many children exist (instead of one O(n) swap per registration).
  let swapPending = false
  let swapImmediate: NodeJS.Immediate | undefined
  let swapTimer: NodeJS.Timeout | undefined
  let lastSwapEnd = -Infinity
  let lastSwapMs = 0
  let stopped = false
  // What the workers serve (a primary's), and when the last change is served everywhere.
  let snapshot: ChildrenSnapshot = { version: 0, children: [] }
  let served: Promise<void> = Promise.resolve()
  let waiting: Array<() => void> = []

  /**
   * Resolves once every change made so far is served (here, or by every worker).
   * `unlessSpaced`: not when the next swap is spaced out (a burst), which a
   * registration's answer does not wait for: it would cost every registration of
   * a burst a swap of its own, which spacing them avoids.
   */
  function inService (unlessSpaced = false): Promise<void> {
    if (!swapPending || stopped) return served
    if (unlessSpaced && swapTimer !== undefined) return Promise.resolve()
    return new Promise((resolve) => { waiting.push(resolve) })
  }

  function publish (): Promise<void> {
    if (workers === undefined) return Promise.resolve()
    const children = registry.children().map((c): ChildSnapshot => ({ name: c.name, url: c.url, domains: c.domains, ...(c.protocol === undefined ? {} : { protocol: c.protocol }) }))
    snapshot = { version: snapshot.version + 1, children }
    return workers.ask(CHAIN_OPS.children, snapshot).then(() => {})
  }

  function applyChanges (save = true): void {
    swapPending = false
    swapImmediate = undefined
    swapTimer = undefined
    const resolve = waiting
    waiting = []
    if (stopped) {
      for (const r of resolve) r()
      return
    }
    const start = performance.now()
    deps.served.serveChained(chainedEntries())
    // A primary's workers each swap too, after the snapshot is built here: spaced alike.
    served = publish()
    lastSwapEnd = performance.now()
    lastSwapMs = lastSwapEnd - start
    void served.then(() => { for (const r of resolve) r() })
    // The store coalesces and spaces its writes too (SAVE_INTERVAL_MS).
    if (save) void store.save(() => registry.children())
  }

  /** The registry changed: count it now, swap the router and save soon. */
  function changed (): void {
    metrics.chainChildren.set(registry.size)
    if (swapPending || stopped) return
    swapPending = true
    const wait = lastSwapEnd + SWAP_SPACING * lastSwapMs - performance.now()
    if (wait <= 0) {
      swapImmediate = setImmediate(applyChanges)
    } else {
      swapTimer = setTimeout(applyChanges, Math.ceil(wait))
      swapTimer.unref()
    }
  }

  /** Logs a change once it is served (a line operators and tests act on). */
  function whenServed (log: () => void): void {
    void inService().then(log)
  }

  const saved = await store.load()
  const restored = registry.restore(saved, Date.now())
  if (restored.length < saved.length) {
    const kept = new Set(restored.map((c) => c.name))
    logger.warn('chain registrations not restored: chain.max_children reached (they register again at their next renewal if there is room)', { max_children: chain.maxChildren, skipped: saved.filter((c) => !kept.has(c.name)).length })
  }
  if (restored.length > 0) {
    logger.info('chain registrations restored', { children: restored.map((c) => ({ name: c.name, url: c.url, domains: c.domains.length })) })
  }
  for (const child of restored) updateEntries(child, true)
  metrics.chainChildren.set(registry.size)
  // Nothing to save yet: the file is what was just read (a start that fails later
  // must not leave a write behind).
  applyChanges(false)

  const sweepMs = Math.min(5000, Math.max(100, Math.floor(chain.leaseTtlMs / 10)))
  const sweepTimer = setInterval(function sweepLeases () {
    const expired = registry.sweep(Date.now())
    if (expired.length === 0) return
    for (const child of expired) {
      dropPool(child.name, false)
      updateEntries(child, false)
    }
    changed()
    whenServed(() => {
      for (const child of expired) logger.warn('chain lease expired: routes dropped', { child: child.name, url: child.url, domains: child.domains.map((d) => d.domain), renewed_at: new Date(child.renewedAt).toISOString() })
    })
  }, sweepMs)
  sweepTimer.unref()

  const childStatus = (c: ChildRecord, session: (name: string) => unknown): Record<string, unknown> => ({
    name: c.name,
    url: c.url,
    domains: c.domains.map((d) => d.domain),
    registered_at: new Date(c.registeredAt).toISOString(),
    renewed_at: new Date(c.renewedAt).toISOString(),
    ...(c.protocol === 'mulch'
      // No lease and no session: HTTP/1.1 through the forwarder's pool.
      ? { protocol: 'mulch', lease_expires_at: null }
      : { lease_expires_at: new Date(c.expiresAt).toISOString(), session: session(c.name) })
  })
  const statusOf = (session: (name: string) => unknown): Record<string, unknown> => ({
    role: 'parent',
    api: chain.parentUrl,
    lease_ttl_seconds: chain.leaseTtlMs / 1000,
    keepalive: { ping_interval_ms: keepalive.pingIntervalMs, ping_timeout_ms: keepalive.pingTimeoutMs, connect_timeout_ms: chain.connectTimeoutMs, idle_timeout_ms: chain.idleTimeoutMs, max_concurrent_streams: chain.maxConcurrentStreams },
    children: registry.children().map((c) => childStatus(c, session))
  })
  /**
   * The registry is the primary's; the sessions are each worker's: a child's
   * `session` sums them, with each worker's own under `session.workers`.
   */
  const status = workers === undefined
    ? () => statusOf((name) => forwarding?.sessionStatus(name) ?? IDLE_SESSION)
    : async (): Promise<Record<string, unknown>> => {
      const answers = await workers.ask<{ sessions: Record<string, PoolStatus> }>(CHAIN_OPS.status)
      return {
        ...statusOf((name) => sessionsOverWorkers(answers.map((a) => ({ worker: a.slot, status: a.value.sessions[name] ?? IDLE_SESSION })))),
        workers: answers.length
      }
    }

  function register (request: RegisterRequest, peer: string): { leaseTtlMs: number, domains: readonly ChainDomain[] } {
    let outcome
    try {
      outcome = registry.register(request, Date.now())
    } catch (err) {
      if (err instanceof DomainConflictError) {
        metrics.chainRegistrationsRefused.inc({ reason: 'conflict' })
        logger.warn('chain registration refused: domain conflict', { child: request.name, peer, conflicts: err.conflicts })
      } else if (err instanceof ChainError && err.code === 'CHAIN_CHILDREN_FULL') {
        metrics.chainRegistrationsRefused.inc({ reason: 'full' })
        // A fleet past the limit retries every few seconds: one line per interval.
        const suppressed = refusedLog.admit('full')
        if (suppressed >= 0) logger.warn('chain registration refused: chain.max_children reached', { child: request.name, peer, children: registry.size, max_children: chain.maxChildren, ...(suppressed > 0 ? { suppressed } : {}) })
      }
      throw err
    }
    const { record, previous } = outcome
    for (const { from, now } of outcome.moved ?? []) {
      // A Mulch child on the same host took these domains under another ForwardTo.
      logger.info('chain domains moved to another Mulch ForwardTo on the same host', { from: from.name, to: record.name, domains: from.domains.length - (now?.domains.length ?? 0) })
      if (now === undefined) dropPool(from.name, false)
      updateEntries(now ?? from, now !== undefined)
    }
    if (previous !== undefined && previous.url !== record.url) {
      logger.info('chain child moved: replacing its registration', { child: record.name, from: previous.url, to: record.url })
      dropPool(record.name, false)
    }
    if (outcome.changed) {
      updateEntries(record, true)
      changed()
      whenServed(() => { logger.info('chain child registered', { child: record.name, url: record.url, peer, domains: record.domains.length, ...(record.protocol === 'mulch' ? { protocol: 'mulch' } : { lease_ttl_ms: chain.leaseTtlMs }) }) })
    } else {
      logger.debug('chain lease renewed', { child: record.name })
    }
    // A child that registers is alive: a pool waiting to probe it may try now.
    forwarding?.probe(record.name)
    workers?.notify(CHAIN_OPS.probe, { child: record.name })
    return { leaseTtlMs: chain.leaseTtlMs, domains: record.domains }
  }
  function deregister (name: string, peer: string): boolean {
    const record = registry.deregister(name)
    if (record === undefined) return false
    dropPool(name, false)
    updateEntries(record, false)
    changed()
    whenServed(() => { logger.info('chain child deregistered', { child: name, peer, domains: record.domains.length }) })
    return true
  }
  const app = createChainApi({
    auth,
    logger,
    onAuthFailure: () => { metrics.chainAuthFailures.inc() },
    register,
    deregister,
    conflicts: (name, domains) => registry.conflicts(name, domains),
    status,
    inService: () => inService(true)
  })
  // mulch-proxy children register on the same listener, in the same namespace.
  addMulchRoutes(app, {
    auth,
    logger,
    onAuthFailure: () => { metrics.chainAuthFailures.inc() },
    register,
    deregister,
    conflicts: (name, domains, mulchUrl) => registry.conflicts(name, domains, mulchUrl),
    // mulch-proxy names the owner by its host; vmfront children by name.
    ownerLabel: (owner) => {
      const record = registry.get(owner)
      return record?.protocol === 'mulch' ? new URL(record.url).hostname : owner
    },
    inService: () => inService(true)
  })

  const listen = apiListenAddress(chain.parentUrl)
  let server: http.Server | https.Server | undefined
  if (listen.tls && deps.tls === undefined) {
    // main.ts passes the certificate manager's TLS; an embedding without it gets no https API.
    logger.error('chain API not started: an https:// parent_url needs TLS options (deps.tls)', { parent_url: chain.parentUrl })
  } else {
    const listener = getRequestListener(app.fetch)
    const serverOptions = { headersTimeout: 10_000, requestTimeout: 30_000, keepAliveTimeout: 5_000 }
    server = listen.tls
      ? https.createServer({ ...serverOptions, ...deps.tls!, ...TLS_SERVER_POLICY }, listener)
      : http.createServer(serverOptions, listener)
    const s = server
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject)
      s.listen(listen.port, listen.host, () => { s.off('error', reject); resolve() })
    }).catch((err: unknown) => {
      throw new ChainError('CHAIN_API_UNAVAILABLE', `chain API cannot listen on ${listen.host}:${listen.port} (chain.parent_url): ${(err as Error).message}`, { cause: err })
    })
    logger.info('chain API listening', { parent_url: chain.parentUrl, host: listen.host, port: listen.port })
  }

  return {
    entries: chainedEntries,
    ownHosts: () => parentOwnHosts(chain.parentUrl),
    ...(forwarding === undefined ? {} : { forward: forwarding.forward, upgrade: forwarding.upgrade }),
    status,
    attachWorker (peer, slot) {
      // A worker that starts (or replaces one) asks for what is served now.
      peer.handle(CHAIN_OPS.childrenNow, () => snapshot)
      return workers?.add(slot, peer) ?? (() => {})
    },
    async forget (nameOrUrl: string) {
      const gone = registry.forget(nameOrUrl)
      for (const record of gone) {
        logger.info('chain child forgotten by the operator', { child: record.name, url: record.url, domains: record.domains.map((d) => d.domain), ...(record.protocol === 'mulch' ? { protocol: 'mulch' } : {}) })
        dropPool(record.name, false)
        updateEntries(record, false)
      }
      if (gone.length > 0) changed()
      await inService()
      return gone.map((r) => ({ name: r.name, url: r.url, domains: r.domains.map((d) => d.domain), ...(r.protocol === 'mulch' ? { protocol: 'mulch' } : {}) }))
    },
    applySettings (settings) {
      // The API's Bearer check and the session proofs (here, or in each worker's own reload).
      auth.rekey(settings.psk)
      keepalive = { pingIntervalMs: settings.pingIntervalMs, pingTimeoutMs: settings.pingTimeoutMs }
      forwarding?.setKeepalive(keepalive)
    },
    async reload (): Promise<void> {
      // The parent's own routes may now shadow chained domains: reload.ts logs each one.
    },
    async beginShutdown (): Promise<void> {
      // Children keep their registrations (saved on disk) across a parent restart.
      server?.close()
    },
    async stop (): Promise<void> {
      stopped = true
      clearImmediate(swapImmediate)
      clearTimeout(swapTimer)
      clearInterval(sweepTimer)
      for (const r of waiting.splice(0)) r()
      await forwarding?.close()
      server?.closeAllConnections()
      await store.save(registry.children())
    }
  }
}
