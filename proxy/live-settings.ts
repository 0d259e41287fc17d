/**
 * @module proxy/live-settings
 * The settings of the TOML that change live on SIGHUP (SPEC §12), as one value the
 * request path reads through one holder: a reload builds a whole new LiveSettings
 * and swaps one reference, like the route table. Parts whose settings did not
 * change are carried over (a rate limiter keeps its per-IP state, a forwarder its
 * upstream connections); parts that were replaced are handed back to be retired.
 */
import type { ProxyConfig } from './config.ts'
import type { LineSink } from './line-sink.ts'
import type { ListenerOptions } from './server.ts'
import { createAccessLog, type AccessLog } from './access-log.ts'
import { createErrorPages, type ErrorPages } from './error-pages.ts'
import { createForwarder, type Forwarder } from './forward.ts'
import { createIpMatcher, type IpMatcher } from './ip-match.ts'
import { createRateLimiter, type RateLimiter } from './rate-limit.ts'
import { isUnlimited } from './rate-profile.ts'
import { createWebSocketProxy, type WebSocketProxy } from './websocket.ts'

/** What the request path reads per request; never changed once built. */
export interface LiveSettings {
  /**
   * The config these settings were built from (the last good TOML). Only its live
   * keys are in effect: a key that needs a restart still runs with the start value.
   */
  readonly config: ProxyConfig
  /** undefined: `log.access = false`. */
  readonly accessLog: AccessLog | undefined
  readonly trustedProxies: IpMatcher
  readonly errorPages: ErrorPages
  /** Always present (status, dump, route profile checks). */
  readonly limiter: RateLimiter
  /** The limiter the handler applies; undefined when every profile is unlimited (no per-request cost). */
  readonly limiting: RateLimiter | undefined
  readonly forwarder: Forwarder
  readonly websockets: WebSocketProxy
  /** The client-side timeouts and limits of the HTTP(S) listeners. */
  readonly listenerOptions: ListenerOptions
}

/** Holds the settings being served; a reload replaces `settings` in one assignment. */
export interface LiveHolder {
  settings: LiveSettings
}

/** Parts of the previous settings that the new ones no longer use: to be closed once what still uses them has ended. */
export interface RetiredParts {
  readonly limiter?: RateLimiter
  readonly forwarder?: Forwarder
  readonly websockets?: WebSocketProxy
}

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b)

function forwarderOptions (c: ProxyConfig): Parameters<typeof createForwarder>[0] {
  return {
    connectTimeoutMs: c.timeouts.connectMs,
    responseTimeoutMs: c.timeouts.upstreamResponseMs,
    idleTimeoutMs: c.timeouts.upstreamIdleMs,
    keepAliveMs: c.upstream.keepAliveMs,
    maxConnectionsPerTarget: c.upstream.maxConnectionsPerTarget
  }
}

function websocketOptions (c: ProxyConfig): Parameters<typeof createWebSocketProxy>[0] {
  return { connectTimeoutMs: c.timeouts.connectMs, idleTimeoutMs: c.timeouts.websocketIdleMs, responseTimeoutMs: c.timeouts.upstreamResponseMs }
}

/** The listener options of a config (server.ts applies them to new and existing listeners). */
export function listenerOptionsOf (c: ProxyConfig): ListenerOptions {
  return {
    requestHeadersMs: c.timeouts.requestHeadersMs,
    clientIdleMs: c.timeouts.clientIdleMs,
    maxHeaderBytes: c.limits.maxHeaderBytes,
    maxRequestsPerConnection: c.limits.maxRequestsPerConnection
  }
}

/**
 * Builds the live settings of `config`, reusing the parts of `previous` whose
 * settings are unchanged. Builds everything before anything is swapped, so a
 * failure (an unreadable error template: ProxyError CONFIG_INVALID) leaves the
 * running settings untouched; what it had already built is closed.
 */
/** Builds the rate limiter of a set of profiles (a worker's asks its primary: shared-rate-limit.ts). */
export type LimiterFactory = (profiles: ProxyConfig['rateProfiles']) => RateLimiter

/** How a worker's settings differ from a single process's (SPEC §12). */
export interface LiveParts {
  readonly makeLimiter?: LimiterFactory
  /** The worker's slot, written in each access-log line. */
  readonly worker?: number
}

export function buildLiveSettings (config: ProxyConfig, sink: LineSink, previous?: LiveSettings, parts: LiveParts = {}): { settings: LiveSettings, retired: RetiredParts } {
  const makeLimiter = parts.makeLimiter ?? ((profiles) => createRateLimiter({ profiles }))
  const prev = previous?.config
  const errorPages = prev !== undefined && prev.errorPages.template === config.errorPages.template ? previous!.errorPages : createErrorPages(config.errorPages.template)
  const keepLimiter = prev !== undefined && same(prev.rateProfiles, config.rateProfiles)
  const keepForwarder = prev !== undefined && same(forwarderOptions(prev), forwarderOptions(config))
  const keepWebsockets = prev !== undefined && same(websocketOptions(prev), websocketOptions(config))
  const limiter = keepLimiter ? previous!.limiter : makeLimiter(config.rateProfiles)
  const settings: LiveSettings = Object.freeze({
    config,
    accessLog: !config.log.access ? undefined : previous?.accessLog ?? createAccessLog(sink, parts.worker),
    trustedProxies: prev !== undefined && same(prev.headers.trustedProxies, config.headers.trustedProxies) ? previous!.trustedProxies : createIpMatcher(config.headers.trustedProxies),
    errorPages,
    limiter,
    limiting: config.rateProfiles.every(isUnlimited) ? undefined : limiter,
    forwarder: keepForwarder ? previous!.forwarder : createForwarder(forwarderOptions(config)),
    websockets: keepWebsockets ? previous!.websockets : createWebSocketProxy(websocketOptions(config)),
    listenerOptions: Object.freeze(listenerOptionsOf(config))
  })
  const retired: RetiredParts = previous === undefined
    ? {}
    : {
        limiter: keepLimiter ? undefined : previous.limiter,
        forwarder: keepForwarder ? undefined : previous.forwarder,
        websockets: keepWebsockets ? undefined : previous.websockets
      }
  return { settings, retired }
}

/**
 * An ErrorPages that renders with the pages being served at each call: for the
 * listeners' own error answers (bad framing, CONNECT), built once per listener.
 */
export function liveErrorPages (holder: LiveHolder): ErrorPages {
  return {
    body: (status) => holder.settings.errorPages.body(status),
    reason: (status) => holder.settings.errorPages.reason(status)
  }
}
