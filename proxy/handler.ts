/**
 * @module proxy/handler
 * The per-request pipeline: ACME HTTP-01 → host lookup → client identity →
 * redirects → rate limit → forward (to a VM, or to a chain child) → error page,
 * with metrics and the access log recorded once when the response closes.
 * This is the hot path: it allocates little and never blocks.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import type { ClientRequest, ClientResponse, Forwarder, ForwardOutcome, UpstreamFailure } from './forward.ts'
import type { ErrorPages } from './error-pages.ts'
import type { ProxyMetrics } from './metrics.ts'
import type { IpMatcher } from './ip-match.ts'
import type { Router, RouteEntry } from './router.ts'
import type { WebSocketProxy } from './websocket.ts'
import type { Logger } from './log.ts'
import type { AccessLog } from './access-log.ts'
import { resolveClient, upstreamHeaders, type ClientInfo } from './headers.ts'
import { admitRequest, type RateLimiter, type Refusal } from './rate-limit.ts'
import { UNKNOWN_DOMAIN } from './metrics.ts'
import { createLogThrottle } from './log-throttle.ts'

/** Holds the router being served; reloads replace `router` in one assignment. */
export interface RouterHolder {
  router: Router
}

/** A request being answered, as listed in the diagnostic dump. */
export interface ActiveRequest {
  readonly start: number
  readonly req: ClientRequest
  domain: string
  client: string
}

/** Forwards a chained domain's request to its child (parent mode). */
export type ChainForwardFn = (req: ClientRequest, res: ClientResponse, entry: RouteEntry, client: ClientInfo, onError: (outcome: ForwardOutcome) => void) => void

/** Forwards a WebSocket (HTTP/1.1 upgrade) for a chained domain to its child (parent mode); `done` is called once. */
export type ChainUpgradeFn = (req: IncomingMessage, socket: Duplex, head: Buffer, entry: RouteEntry, client: ClientInfo, done: (status: number, failure?: UpstreamFailure) => void) => void

export interface HandlerDeps {
  routes: RouterHolder
  forwarder: Forwarder
  websockets: WebSocketProxy
  errorPages: ErrorPages
  metrics: ProxyMetrics
  logger: Logger
  accessLog: AccessLog | undefined
  trustedProxies: IpMatcher
  /** The https listener's port, for redirect_to_https (undefined: no https listener). */
  httpsPort: number | undefined
  /** Answers ACME HTTP-01 challenges; true when it did. */
  challenge?: (req: IncomingMessage, res: ClientResponse) => boolean
  /** Whether a request comes from an authenticated chain parent (child mode). */
  fromChainParent?: (req: ClientRequest) => boolean
  /** Per-client-IP rate limiting by the route's profile. */
  limiter?: RateLimiter
  chainForward?: ChainForwardFn
  chainUpgrade?: ChainUpgradeFn
  active: Set<ActiveRequest>
}

/**
 * Who the client is: from a trusted proxy or the authenticated chain parent, the
 * forwarding headers are believed; from anyone else, the peer address is.
 */
function identifyClient (deps: HandlerDeps, req: ClientRequest, scheme: 'http' | 'https', host: string): { client: ClientInfo, fromParent: boolean } {
  const peer = req.socket?.remoteAddress ?? ''
  const fromParent = deps.fromChainParent !== undefined && deps.fromChainParent(req)
  const trusted = fromParent || deps.trustedProxies.matches(peer)
  return { client: resolveClient(peer, trusted, req.headers, scheme, host, deps.trustedProxies), fromParent }
}

/** Splits an absolute-form request target into host and origin-form path. */
function parseAbsoluteTarget (target: string): { host: string, path: string } | undefined {
  try {
    const url = new URL(target)
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return undefined
    return { host: url.host, path: url.pathname + url.search }
  } catch {
    return undefined
  }
}

/** Creates the request listener of one listener (`scheme` is the client's scheme there). */
export function createRequestHandler (deps: HandlerDeps, scheme: 'http' | 'https'): (req: ClientRequest, res: ClientResponse) => void {
  const { metrics, errorPages, forwarder } = deps
  const unknown = metrics.domain(UNKNOWN_DOMAIN)
  // A dead VM under load would otherwise log one line per request.
  const upstreamLog = createLogThrottle(1000)
  const httpsSuffix = deps.httpsPort === undefined || deps.httpsPort === 443 ? '' : `:${deps.httpsPort}`

  function sendError (res: ClientResponse, status: number, extra?: Record<string, string>): void {
    if (res.headersSent || res.destroyed) {
      res.destroy()
      return
    }
    const body = errorPages.body(status)
    const headers: Record<string, string | number> = { 'content-type': 'text/html; charset=utf-8', 'content-length': body.length, 'cache-control': 'no-store', ...extra }
    ;(res as ServerResponse).writeHead(status, headers)
    res.end(body)
  }

  function redirect (res: ClientResponse, code: number, location: string): void {
    ;(res as ServerResponse).writeHead(code, { location, 'content-length': 0 })
    res.end()
  }

  return function handleRequest (req: ClientRequest, res: ClientResponse): void {
    const active: ActiveRequest = { start: performance.now(), req, domain: UNKNOWN_DOMAIN, client: req.socket?.remoteAddress ?? '' }
    deps.active.add(active)
    metrics.inFlight.value++
    let failure: UpstreamFailure | undefined
    let outcomeStatus = 0
    res.once('close', function recordRequest () {
      metrics.inFlight.value--
      deps.active.delete(active)
      const status = outcomeStatus !== 0 ? outcomeStatus : res.writableFinished ? res.statusCode : 499
      const seconds = (performance.now() - active.start) / 1000
      const recorder = active.domain === UNKNOWN_DOMAIN ? unknown : metrics.domain(active.domain)
      recorder.record(status, req.method ?? 'GET', seconds)
      if (failure !== undefined) recorder.upstreamError(failure)
      deps.accessLog?.write(req, status, seconds, active.domain, active.client, failure)
    })

    try {
      if (scheme === 'http' && deps.challenge !== undefined && deps.challenge(req as IncomingMessage, res)) return
      let host = req.headers.host ?? (req.headers[':authority'] as string | undefined)
      let path = req.url ?? '/'
      if (path.charCodeAt(0) !== 47 /* / */ && path !== '*') {
        // Absolute-form target (RFC 9112 §3.2.2): its authority replaces the Host header.
        const absolute = parseAbsoluteTarget(path)
        if (absolute === undefined) {
          sendError(res, 400)
          return
        }
        host = absolute.host
        path = absolute.path
      }
      const entry = deps.routes.router.match(host)
      if (entry === undefined) {
        sendError(res, 404)
        return
      }
      active.domain = entry.domain
      const { client, fromParent } = identifyClient(deps, req, scheme, host ?? entry.domain)
      active.client = client.clientIp
      const route = entry.route

      if (route.redirectTo !== undefined) {
        redirect(res, route.redirectCode, `${client.proto}://${route.redirectTo}${path}`)
        return
      }
      // A chain parent applies redirect_to_https itself (its https port is the client's).
      if (route.redirectToHttps && client.proto === 'http' && deps.httpsPort !== undefined && !fromParent) {
        redirect(res, 308, `https://${entry.domain}${httpsSuffix}${path}`)
        return
      }

      const onError = (outcome: ForwardOutcome): void => {
        failure = outcome.failure
        outcomeStatus = outcome.status
        if (outcome.failure === 'client_abort') return
        const suppressed = upstreamLog.admit(`${entry.domain} ${outcome.failure ?? ''}`)
        if (suppressed >= 0) deps.logger.warn('upstream failed', { domain: entry.domain, reason: outcome.failure, status: outcome.status, err: outcome.error, ...(suppressed > 0 ? { suppressed } : {}) })
        sendError(res, outcome.status)
      }
      const forward = (): void => {
        if (entry.chain !== undefined && deps.chainForward !== undefined) {
          deps.chainForward(req, res, entry, client, onError)
          return
        }
        const target = route.target
        if (target === undefined) {
          sendError(res, 502)
          return
        }
        forwarder.forward(req, res, target.origin, path, upstreamHeaders(req.rawHeaders, client, req.headers.connection), onError)
      }

      // SPEC §7: a chained request was rate limited once, at the parent.
      if (deps.limiter === undefined || fromParent) {
        forward()
        return
      }
      const limiter = deps.limiter
      admitRequest(limiter, client.clientIp, entry.profile, res, forward, (refusal: Refusal) => {
        const profile = limiter.profile(entry.profile).name
        metrics.rateLimited.inc({ profile })
        deps.logger.info('rate limited', { domain: entry.domain, client: client.clientIp, profile, reason: refusal.reason })
        sendError(res, 429, { 'retry-after': String(Math.max(1, Math.ceil(refusal.retryAfterSec))) })
      }, (err: unknown) => {
        deps.logger.error('request handler failed', { err })
        sendError(res, 500)
      })
    } catch (err) {
      deps.logger.error('request handler failed', { err })
      outcomeStatus = 500
      sendError(res, 500)
    }
  }
}

/** Creates the `upgrade` listener: WebSockets go to the VM through http-proxy-3. */
export function createUpgradeHandler (deps: HandlerDeps, scheme: 'http' | 'https'): (req: IncomingMessage, socket: Duplex, head: Buffer) => void {
  const { metrics } = deps
  return function handleUpgrade (req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => {})
    const start = performance.now()
    const host = req.headers.host
    const entry = deps.routes.router.match(host)
    // The access log names the real client once it is known (the peer until then).
    let clientIp = req.socket.remoteAddress ?? ''
    const finish = (domain: string, status: number, failure?: UpstreamFailure): void => {
      const recorder = metrics.domain(domain)
      const seconds = (performance.now() - start) / 1000
      recorder.record(status, req.method ?? 'GET', seconds)
      if (failure !== undefined) recorder.upstreamError(failure)
      deps.accessLog?.write(req, status, seconds, domain, clientIp, failure)
    }
    const refuse = (status: number, domain: string): void => {
      const body = deps.errorPages.body(status)
      socket.end(`HTTP/1.1 ${status} ${deps.errorPages.reason(status)}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body.toString()}`)
      finish(domain, status)
    }
    if (entry === undefined) {
      refuse(404, UNKNOWN_DOMAIN)
      return
    }
    const route = entry.route
    const chainUpgrade = entry.chain !== undefined ? deps.chainUpgrade : undefined
    if (chainUpgrade === undefined && (route.target === undefined || entry.chain !== undefined)) {
      // Redirect routes do not take upgrades; chained domains only through chainUpgrade.
      refuse(route.redirectTo !== undefined ? 404 : 502, entry.domain)
      return
    }
    const { client } = identifyClient(deps, req, scheme, host ?? entry.domain)
    clientIp = client.clientIp
    if (chainUpgrade !== undefined) {
      chainUpgrade(req, socket, head, entry, client, (status, failure) => {
        if (failure !== undefined && failure !== 'client_abort') deps.logger.warn('websocket upstream failed', { domain: entry.domain, reason: failure, child: entry.chain?.child })
        finish(entry.domain, status, failure)
      })
      return
    }
    const target = route.target!
    deps.websockets.upgrade(req, socket, head, target.origin, client, (status, failure) => {
      if (failure !== undefined) deps.logger.warn('websocket upstream failed', { domain: entry.domain, reason: failure })
      finish(entry.domain, status, failure)
    })
  }
}
