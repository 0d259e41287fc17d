/**
 * @module proxy/chain/parent-forward
 * What a parent process that serves requests needs to reach its children: one
 * HTTP/2 session pool per child (h2-pool.ts), opened on demand, and HTTP/1.1 with
 * Mulch-PSK for mulch-proxy children; plus the router entries of their domains.
 * A single process builds it over its own registry; each worker of a primary
 * builds its own over the children the primary publishes (proxy/chain/shared.ts),
 * so sessions are per worker and each counts its own resets.
 */
import type { RouteEntry } from '../router.ts'
import type { Route } from '../route-table.ts'
import type { ChainDeps, ChainForwardFn, ChainUpgradeFn } from './types.ts'
import type { ChainAuth } from './auth.ts'
import { createChainForwarder } from './h2-forward.ts'
import { createChildPool, type ChildPool, type PoolStatus } from './h2-pool.ts'
import { createChainUpgrade } from './ws-forward.ts'
import { forwardToMulchChild, upgradeToMulchChild } from './mulch-forward.ts'
import type { ChildSnapshot } from './shared.ts'
import { servedProfileName } from '../rate-profile.ts'
import { createForwarder } from '../forward.ts'
import { createWebSocketProxy } from '../websocket.ts'
import type { Logger } from '../log.ts'

/** The router entries of one child's domains. */
export function entriesOf (child: ChildSnapshot, hasProfile: (name: string) => boolean): readonly RouteEntry[] {
  return child.domains.map((d) => {
    // redirect_to_https is the parent's to apply: its https port is the one clients reach.
    const route: Route = Object.freeze({ domain: d.domain, redirectCode: 302, redirectToHttps: d.redirectToHttps === true, rateProfile: d.rateProfile })
    return Object.freeze({ domain: d.domain, route, chain: Object.freeze({ child: child.name, url: child.url }), profile: servedProfileName(d.rateProfile, hasProfile) })
  })
}

/** A child's session status when this process has no pool for it (nothing forwarded yet). */
export const IDLE_SESSION: Readonly<Pick<PoolStatus, 'health' | 'connected' | 'sessions' | 'streams' | 'resets'>> = Object.freeze({ health: 'up', connected: false, sessions: 0, streams: 0, resets: 0 })

export interface ChildForwarding {
  forward: ChainForwardFn
  upgrade: ChainUpgradeFn
  /** Closes a child's sessions (gone, or moved to another URL). */
  drop (name: string, force: boolean): void
  /** The child registered again: a pool waiting to reconnect may try now. */
  probe (name: string): void
  /** A SIGHUP changed chain.ping_interval / ping_timeout: sessions opened from now on use them. */
  setKeepalive (keepalive: { pingIntervalMs: number, pingTimeoutMs: number }): void
  keepalive (): { pingIntervalMs: number, pingTimeoutMs: number }
  /** The sessions to a child, undefined when none was ever opened here. */
  sessionStatus (name: string): PoolStatus | undefined
  /** Every child with a pool here, and its sessions. */
  sessions (): Map<string, PoolStatus>
  close (): Promise<void>
}

export interface ChildForwardingOptions {
  config: ChainDeps['config']
  logger: Logger
  metrics: ChainDeps['metrics']
  auth: ChainAuth
  /** The child of that name as registered now, or undefined. */
  lookup: (name: string) => Pick<ChildSnapshot, 'url' | 'protocol'> | undefined
}

export function createChildForwarding (options: ChildForwardingOptions): ChildForwarding {
  const { config, logger, metrics, auth, lookup } = options
  const chain = config.chain
  const pools = new Map<string, ChildPool>()
  // The keepalive of sessions opened from now on (a SIGHUP may change it: setKeepalive).
  let keepalive = { pingIntervalMs: chain.pingIntervalMs, pingTimeoutMs: chain.pingTimeoutMs }

  function poolFor (name: string): ChildPool | undefined {
    const record = lookup(name)
    if (record === undefined) return undefined
    let pool = pools.get(name)
    if (pool === undefined || pool.url !== record.url) {
      pool?.close()
      pool = createChildPool({
        child: name,
        url: record.url,
        logger,
        pingIntervalMs: keepalive.pingIntervalMs,
        pingTimeoutMs: keepalive.pingTimeoutMs,
        connectTimeoutMs: chain.connectTimeoutMs,
        idleTimeoutMs: chain.idleTimeoutMs,
        maxConcurrentStreams: chain.maxConcurrentStreams,
        auth,
        // Counted where the session lived: /metrics sums the workers.
        onReset: (child) => { metrics.chainSessionResets.inc({ child }) }
      })
      pools.set(name, pool)
    }
    return pool
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
  const isMulch = (child: string): boolean => lookup(child)?.protocol === 'mulch'

  const h2Forward = createChainForwarder({
    pool: poolFor,
    responseTimeoutMs: config.timeouts.upstreamResponseMs,
    idleTimeoutMs: config.timeouts.upstreamIdleMs
  })
  const h2Upgrade = createChainUpgrade({
    pool: poolFor,
    connectTimeoutMs: chain.connectTimeoutMs,
    responseTimeoutMs: config.timeouts.upstreamResponseMs,
    idleTimeoutMs: config.timeouts.websocketIdleMs
  })

  return {
    forward (req, res, entry, client, onError) {
      if (isMulch(entry.chain!.child)) forwardToMulchChild(mulchForwarder, req, res, entry.chain!.url, auth.psk(), client, onError)
      else h2Forward(req, res, entry, client, onError)
    },
    upgrade (req, socket, head, entry, client, done) {
      if (isMulch(entry.chain!.child)) upgradeToMulchChild(mulchWebsockets, req, socket, head, entry.chain!.url, auth.psk(), client, done)
      else h2Upgrade(req, socket, head, entry, client, done)
    },
    drop (name, force) {
      const pool = pools.get(name)
      if (pool === undefined) return
      pools.delete(name)
      pool.close(force)
    },
    probe (name) { pools.get(name)?.probeNow() },
    setKeepalive (next) {
      if (next.pingIntervalMs === keepalive.pingIntervalMs && next.pingTimeoutMs === keepalive.pingTimeoutMs) return
      keepalive = { ...next }
      // Each pool is replaced on its next use by one with the new keepalive; the old
      // one closes gently (its streams finish), as when a child's URL changes.
      for (const pool of pools.values()) pool.close(false)
      pools.clear()
    },
    keepalive: () => keepalive,
    sessionStatus: (name) => pools.get(name)?.status(),
    sessions: () => new Map([...pools].map(([name, pool]) => [name, pool.status()])),
    async close () {
      for (const pool of pools.values()) pool.close(true)
      pools.clear()
      mulchWebsockets.close()
      await mulchForwarder.close()
    }
  }
}
