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
import type { Route, RouteTable } from '../route-table.ts'
import type { ChainDeps, ChainForwardFn, ChainRuntime, ChainUpgradeFn } from './types.ts'
import { createChainApi } from './api.ts'
import type { ChainDomain, RegisterRequest } from './schema.ts'
import { createChainAuth } from './auth.ts'
import { ChainError, DomainConflictError } from './errors.ts'
import { createChainForwarder } from './h2-forward.ts'
import { createChildPool, type ChildPool } from './h2-pool.ts'
import { createRegistrationStore } from './persist.ts'
import { createChildRegistry, type ChildRecord } from './registry.ts'
import { createChainUpgrade } from './ws-forward.ts'
import { addMulchRoutes } from './mulch-api.ts'
import { forwardToMulchChild, upgradeToMulchChild } from './mulch-forward.ts'
import { servedProfileName } from '../rate-profile.ts'
import { createForwarder } from '../forward.ts'
import { createWebSocketProxy } from '../websocket.ts'
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

/** Starts the parent runtime: restores saved children, then listens for the API. */
export async function startParent (deps: ChainDeps): Promise<ChainRuntime> {
  const { config, logger: baseLogger, metrics } = deps
  const chain = config.chain
  const logger = baseLogger.child({ chain: 'parent' })
  const auth = createChainAuth(chain.psk)
  const store = createRegistrationStore(join(config.dataDir, REGISTRATIONS_FILE), logger, { minIntervalMs: SAVE_INTERVAL_MS })

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
  const pools = new Map<string, ChildPool>()
  const entriesByChild = new Map<string, readonly RouteEntry[]>()
  function * chainedEntries (): Iterable<RouteEntry> {
    for (const list of entriesByChild.values()) yield * list
  }

  function poolFor (name: string): ChildPool | undefined {
    const record = registry.get(name)
    if (record === undefined) return undefined
    let pool = pools.get(name)
    if (pool === undefined || pool.url !== record.url) {
      pool?.close()
      pool = createChildPool({
        child: name,
        url: record.url,
        logger,
        pingIntervalMs: chain.pingIntervalMs,
        pingTimeoutMs: chain.pingTimeoutMs,
        connectTimeoutMs: chain.connectTimeoutMs,
        idleTimeoutMs: chain.idleTimeoutMs,
        maxConcurrentStreams: chain.maxConcurrentStreams,
        auth,
        onReset: (child) => { metrics.chainSessionResets.inc({ child }) }
      })
      pools.set(name, pool)
    }
    return pool
  }

  function dropPool (name: string, force: boolean): void {
    const pool = pools.get(name)
    if (pool === undefined) return
    pools.delete(name)
    pool.close(force)
  }

  /** The router entries of one child's domains. */
  function entriesOf (child: ChildRecord): readonly RouteEntry[] {
    return child.domains.map((d) => {
      // redirect_to_https is the parent's to apply: its https port is the one clients reach.
      const route: Route = Object.freeze({ domain: d.domain, redirectCode: 302, redirectToHttps: d.redirectToHttps === true, rateProfile: d.rateProfile })
      return Object.freeze({ domain: d.domain, route, chain: Object.freeze({ child: child.name, url: child.url }), profile: servedProfileName(d.rateProfile, deps.hasProfile) })
    })
  }

  /** Keeps a child's entries in step with the registry: O(its domains), not O(all). */
  function updateEntries (child: ChildRecord, present: boolean): void {
    if (present) entriesByChild.set(child.name, entriesOf(child))
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

  function applyChanges (save = true): void {
    swapPending = false
    swapImmediate = undefined
    swapTimer = undefined
    if (stopped) return
    const start = performance.now()
    deps.served.serveChained(chainedEntries())
    lastSwapEnd = performance.now()
    lastSwapMs = lastSwapEnd - start
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
      logger.warn('chain lease expired: routes dropped', { child: child.name, url: child.url, domains: child.domains.map((d) => d.domain), renewed_at: new Date(child.renewedAt).toISOString() })
      dropPool(child.name, false)
      updateEntries(child, false)
    }
    changed()
  }, sweepMs)
  sweepTimer.unref()

  const childStatus = (c: ChildRecord): Record<string, unknown> => ({
    name: c.name,
    url: c.url,
    domains: c.domains.map((d) => d.domain),
    registered_at: new Date(c.registeredAt).toISOString(),
    renewed_at: new Date(c.renewedAt).toISOString(),
    ...(c.protocol === 'mulch'
      // No lease and no session: HTTP/1.1 through the forwarder's pool.
      ? { protocol: 'mulch', lease_expires_at: null }
      : { lease_expires_at: new Date(c.expiresAt).toISOString(), session: pools.get(c.name)?.status() ?? { health: 'up', connected: false, sessions: 0, streams: 0, resets: 0 } })
  })
  const status = (): Record<string, unknown> => ({
    role: 'parent',
    api: chain.parentUrl,
    lease_ttl_seconds: chain.leaseTtlMs / 1000,
    keepalive: { ping_interval_ms: chain.pingIntervalMs, ping_timeout_ms: chain.pingTimeoutMs, connect_timeout_ms: chain.connectTimeoutMs, idle_timeout_ms: chain.idleTimeoutMs, max_concurrent_streams: chain.maxConcurrentStreams },
    children: registry.children().map(childStatus)
  })

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
      logger.info('chain child registered', { child: record.name, url: record.url, peer, domains: record.domains.length, ...(record.protocol === 'mulch' ? { protocol: 'mulch' } : { lease_ttl_ms: chain.leaseTtlMs }) })
      changed()
    } else {
      logger.debug('chain lease renewed', { child: record.name })
    }
    // A child that registers is alive: a pool waiting to probe it may try now.
    pools.get(record.name)?.probeNow()
    return { leaseTtlMs: chain.leaseTtlMs, domains: record.domains }
  }
  function deregister (name: string, peer: string): boolean {
    const record = registry.deregister(name)
    if (record === undefined) return false
    logger.info('chain child deregistered', { child: name, peer, domains: record.domains.length })
    dropPool(name, false)
    updateEntries(record, false)
    changed()
    return true
  }
  const app = createChainApi({
    auth,
    logger,
    onAuthFailure: () => { metrics.chainAuthFailures.inc() },
    register,
    deregister,
    conflicts: (name, domains) => registry.conflicts(name, domains),
    status
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
    }
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

  // Mulch children get HTTP/1.1 through a VM forwarder of their own (same
  // mechanism and settings as the proxy's), with the Mulch-PSK added.
  const mulchForwarder = createForwarder({
    connectTimeoutMs: chain.connectTimeoutMs,
    responseTimeoutMs: config.timeouts.upstreamResponseMs,
    idleTimeoutMs: config.timeouts.upstreamIdleMs,
    keepAliveMs: config.upstream.keepAliveMs,
    maxConnectionsPerTarget: config.upstream.maxConnectionsPerTarget
  })
  const mulchWebsockets = createWebSocketProxy({ connectTimeoutMs: chain.connectTimeoutMs, idleTimeoutMs: config.timeouts.websocketIdleMs, responseTimeoutMs: config.timeouts.upstreamResponseMs })
  const isMulch = (child: string): boolean => registry.get(child)?.protocol === 'mulch'

  const h2Forward = createChainForwarder({
    pool: poolFor,
    responseTimeoutMs: config.timeouts.upstreamResponseMs,
    idleTimeoutMs: config.timeouts.upstreamIdleMs
  })
  const forward: ChainForwardFn = (req, res, entry, client, onError) => {
    if (isMulch(entry.chain!.child)) forwardToMulchChild(mulchForwarder, req, res, entry.chain!.url, chain.psk, client, onError)
    else h2Forward(req, res, entry, client, onError)
  }
  const h2Upgrade = createChainUpgrade({
    pool: poolFor,
    connectTimeoutMs: chain.connectTimeoutMs,
    responseTimeoutMs: config.timeouts.upstreamResponseMs,
    idleTimeoutMs: config.timeouts.websocketIdleMs
  })

  const upgrade: ChainUpgradeFn = (req, socket, head, entry, client, done) => {
    if (isMulch(entry.chain!.child)) upgradeToMulchChild(mulchWebsockets, req, socket, head, entry.chain!.url, chain.psk, client, done)
    else h2Upgrade(req, socket, head, entry, client, done)
  }

  const apiHost = new URL(chain.parentUrl).hostname
  return {
    entries: chainedEntries,
    ownHosts: () => (listen.tls && apiHost !== 'localhost' && isIP(apiHost.replace(/^\[|\]$/g, '')) === 0 ? [apiHost] : []),
    forward,
    upgrade,
    status,
    forget (nameOrUrl: string) {
      const gone = registry.forget(nameOrUrl)
      for (const record of gone) {
        logger.info('chain child forgotten by the operator', { child: record.name, url: record.url, domains: record.domains.map((d) => d.domain), ...(record.protocol === 'mulch' ? { protocol: 'mulch' } : {}) })
        dropPool(record.name, false)
        updateEntries(record, false)
      }
      if (gone.length > 0) changed()
      return gone.map((r) => ({ name: r.name, url: r.url, domains: r.domains.map((d) => d.domain), ...(r.protocol === 'mulch' ? { protocol: 'mulch' } : {}) }))
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
      for (const name of [...pools.keys()]) dropPool(name, true)
      mulchWebsockets.close()
      await mulchForwarder.close()
      server?.closeAllConnections()
      await store.save(registry.children())
    }
  }
}
