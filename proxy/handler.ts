/**
 * @module proxy/handler
 * The per-request pipeline: request-line checks → ACME HTTP-01 → host lookup →
 * client identity → redirects → rate limit → forward (to a VM, or to a chain
 * child) → error page, with metrics and the access log recorded once when the
 * response closes. WebSocket upgrades go through the same steps (SPEC §14).
 * This is the hot path: it allocates little and never blocks.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import type { ClientInfo, ClientRequest, ClientResponse, ForwardOutcome, ForwardStats, UpstreamFailure } from './http-types.ts'
import type { ProxyMetrics } from './metrics.ts'
import type { RouteEntry } from './router.ts'
import type { Logger } from './log.ts'
import type { AccessEntry } from './access-log.ts'
import type { ChainForwardFn, ChainUpgradeFn } from './chain/types.ts'
import type { RouterHolder } from './served-routes.ts'
import type { LiveHolder } from './live-settings.ts'
import { MULCH_PSK_HEADER_NAME, resolveClient, upstreamHeaders } from './headers.ts'
import { admitRequest, type ClosingResponse, type Refusal } from './rate-limit.ts'
import { UNKNOWN_DOMAIN } from './metrics.ts'
import { createLogThrottle } from './log-throttle.ts'
import { hasDuplicateHost, splitAbsoluteTarget, toOriginForm } from './request-target.ts'
import { CLIENT_ERROR_STATUS } from './client-errors.ts'
import { writeRawRedirect, writeRawResponse } from './raw-response.ts'
import { RequestIds, REQUEST_ID_HEADER } from './request-id.ts'
import { normalizeIp } from './ip-match.ts'

/**
 * A request being answered (or a WebSocket open), as listed in the diagnostic dump;
 * at its end, the access-log entry (one object per request carries it all).
 */
export interface ActiveRequest extends AccessEntry {
  readonly start: number
}

/** A new ActiveRequest, every field present from the start (one object shape). */
function newActive (req: ClientRequest): ActiveRequest {
  return { start: performance.now(), req, domain: UNKNOWN_DOMAIN, client: normalizeIp(req.socket?.remoteAddress ?? ''), requestId: '', upstream: '', forwardedAt: 0, headersAt: 0, bytesOut: 0, bytesIn: -1 }
}


export interface HandlerDeps {
  routes: RouterHolder
  /**
   * The settings a SIGHUP may change (access log, trusted proxies, rate limiter,
   * forwarders, error pages), read per request through this one holder.
   */
  live: LiveHolder
  metrics: ProxyMetrics
  logger: Logger
  /**
   * The port the https listener is bound to (undefined: no https listener), read
   * when a redirect_to_https Location is built: a listener on port 0 learns its
   * port only once bound, after the handlers exist.
   */
  httpsPort: () => number | undefined
  /** Answers ACME HTTP-01 challenges; true when it did (false: not a token it issued). */
  challenge?: (req: IncomingMessage, res: ClientResponse) => boolean
  /** Whether a request comes from an authenticated chain parent (child mode). */
  fromChainParent?: (req: ClientRequest) => boolean
  /** Whether that parent applies redirect_to_https itself (false: a mulch-proxy parent; default true). */
  chainParentRedirects?: () => boolean
  chainForward?: ChainForwardFn
  chainUpgrade?: ChainUpgradeFn
  active: Set<ActiveRequest>
  /** Told of each upstream failure (the status page's recent errors); never called on success. */
  onUpstreamError?: (domain: string, outcome: ForwardOutcome) => void
}

/** HTTP-01 validation paths (RFC 8555 §8.3): never redirected to https, see redirectLocation. */
const ACME_CHALLENGE_PREFIX = '/.well-known/acme-challenge/'

/** Sent with a 400/505 that refuses the request line: the client speaks something else, stop reading it. */
const CONNECTION_CLOSE: Readonly<Record<string, string>> = Object.freeze({ connection: 'close' })

/** Who the client is, and whether a trusted front (proxy or chain parent) vouched for it. */
interface Identity {
  readonly client: ClientInfo
  readonly fromParent: boolean
  readonly trusted: boolean
}

/**
 * Who the client is: from a trusted proxy or the authenticated chain parent, the
 * forwarding headers are believed; from anyone else, the peer address is.
 */
function identifyClient (deps: HandlerDeps, req: ClientRequest, scheme: 'http' | 'https', host: string, ids: RequestIds): Identity {
  const peer = req.socket?.remoteAddress ?? ''
  const fromParent = deps.fromChainParent !== undefined && deps.fromChainParent(req)
  const trustedProxies = deps.live.settings.trustedProxies
  const trusted = fromParent || trustedProxies.matches(peer)
  const requestId = ids.resolve(req.headers[REQUEST_ID_HEADER], trusted)
  return { client: resolveClient(peer, trusted, req.headers, scheme, host, trustedProxies, requestId), fromParent, trusted }
}

/**
 * Runs `go` once the route's rate profile admits the client (at once without a
 * limiter, and for a chain parent's request, limited once at the parent: SPEC §7);
 * a refusal is counted, logged and answered by `refuse` with its Retry-After seconds.
 * `holder` holds the client's slot until it closes.
 */
function admitClient (
  deps: HandlerDeps, entry: RouteEntry, identity: Identity, holder: ClosingResponse,
  go: () => void, refuse: (retryAfter: string) => void, fail: (err: unknown) => void
): void {
  // The slot is taken from, and released to, the limiter current at admission (a reload may swap it meanwhile).
  const limiter = deps.live.settings.limiting
  if (limiter === undefined || identity.fromParent) {
    go()
    return
  }
  const ip = identity.client.clientIp
  admitRequest(limiter, ip, entry.profile, holder, go, (refusal: Refusal) => {
    const profile = limiter.profile(entry.profile).name
    deps.metrics.rateLimited.inc({ profile })
    deps.logger.info('rate limited', { domain: entry.domain, client: ip, profile, reason: refusal.reason })
    refuse(String(Math.max(1, Math.ceil(refusal.retryAfterSec))))
  }, fail)
}

/** Identifies the client of a routed request (or upgrade) and records who it is on `active`. */
function identifyRouted (deps: HandlerDeps, req: ClientRequest, scheme: 'http' | 'https', host: string | undefined, entry: RouteEntry, active: ActiveRequest, ids: RequestIds): Identity {
  active.domain = entry.domain
  const identity = identifyClient(deps, req, scheme, host ?? entry.domain, ids)
  active.client = identity.client.clientIp
  active.requestId = identity.client.requestId
  return identity
}

/**
 * The status of a request the proxy refuses before looking at routes, else 0:
 * 505 for a request line claiming a major version other than 1 on an HTTP/1
 * connection (RFC 9110 §15.6.6); 400 for the asterisk form (`OPTIONS *`: it asks
 * about the server as a whole, and behind a host-routed front there is none to
 * describe: nginx refuses it with 400 too, while forwarding it made VMs fail) and
 * for more than one Host field line (RFC 9112 §3.2).
 */
function refusedStatus (req: ClientRequest): number {
  const major = req.httpVersionMajor
  if (major !== 1 && (major !== 2 || !('stream' in req))) return 505
  if (req.url === '*') return 400
  return hasDuplicateHost(req.rawHeaders) ? 400 : 0
}

/**
 * Normalizes the request target in place and returns the origin-form path, or
 * undefined for a target no proxy may forward (400). An absolute-form target
 * (HTTP/1.x only; HTTP/2 carries :path) becomes origin-form with its authority as
 * Host (RFC 9112 §3.2.2).
 */
function originFormPath (req: ClientRequest): string | undefined {
  const path = req.url ?? '/'
  if (path.charCodeAt(0) === 47 /* / */) return path
  const absolute = req.httpVersionMajor === 1 ? splitAbsoluteTarget(path) : undefined
  if (absolute === undefined) return undefined
  toOriginForm(req as IncomingMessage, absolute)
  return absolute.path
}

/** The status the listener gave a request whose body failed to parse (client-errors.ts), if any. */
function parseErrorStatus (req: ClientRequest): number | undefined {
  return (req as { [CLIENT_ERROR_STATUS]?: number })[CLIENT_ERROR_STATUS]
}

/**
 * Where the route sends this request instead of serving it, or undefined.
 * `redirect_to`: the same scheme, path and query on the other host, no port (as
 * mulch-proxy). `redirect_to_https`: a plain-HTTP client goes to https with the
 * https listener's port when not 443, except for ACME HTTP-01 paths (SPEC §14: a
 * token the certificate manager did not answer is the VM's own, over plain HTTP).
 * A chain parent's client goes to the parent's https, not to this child's port.
 * Without an https listener, only a client that came through a trusted front
 * (proxy or chain parent, which terminates TLS) is redirected, with no port:
 * nothing here could answer https, so a direct client is served.
 */
function redirectLocation (deps: HandlerDeps, entry: RouteEntry, identity: Identity, path: string): string | undefined {
  const route = entry.route
  if (route.redirectTo !== undefined) return `${identity.client.proto}://${route.redirectTo}${path}`
  // A vmfront chain parent applies redirect_to_https itself, with its own https
  // port (the client's): what it forwards over plain HTTP is meant to be served.
  // A mulch-proxy parent does not (its chain API carries no such flag): the
  // child redirects to the parent's https (Host, no port), as mulch-proxy's child.
  const parentRedirects = identity.fromParent && deps.chainParentRedirects?.() !== false
  if (!route.redirectToHttps || identity.client.proto !== 'http' || parentRedirects || path.startsWith(ACME_CHALLENGE_PREFIX)) return undefined
  if (identity.fromParent) return `https://${entry.domain}${path}`
  const port = deps.httpsPort()
  if (port === undefined) return identity.trusted ? `https://${entry.domain}${path}` : undefined
  return port === 443 ? `https://${entry.domain}${path}` : `https://${entry.domain}:${port}${path}`
}


/** Creates the request listener of one listener (`scheme` is the client's scheme there). */
export function createRequestHandler (deps: HandlerDeps, scheme: 'http' | 'https'): (req: ClientRequest, res: ClientResponse) => void {
  const { metrics } = deps
  const unknown = metrics.domain(UNKNOWN_DOMAIN)
  const ids = new RequestIds()
  // A dead VM under load would otherwise log one line per request.
  const upstreamLog = createLogThrottle(1000)

  function sendError (res: ClientResponse, active: ActiveRequest, status: number, extra?: Readonly<Record<string, string>>): void {
    if (res.headersSent || res.destroyed) {
      res.destroy()
      return
    }
    const body = deps.live.settings.errorPages.body(status)
    if (res.req.method !== 'HEAD') active.bytesOut = body.length
    const headers: Record<string, string | number> = { 'content-type': 'text/html; charset=utf-8', 'content-length': body.length, 'cache-control': 'no-store', ...extra }
    ;(res as ServerResponse).writeHead(status, headers)
    res.end(body)
  }

  function redirect (res: ClientResponse, code: number, location: string): void {
    ;(res as ServerResponse).writeHead(code, { location, 'content-length': 0 })
    res.end()
  }

  return function handleRequest (req: ClientRequest, res: ClientResponse): void {
    const active = newActive(req)
    deps.active.add(active)
    metrics.inFlight.value++
    let failure: UpstreamFailure | undefined
    let outcomeStatus = 0
    res.once('close', function recordRequest () {
      metrics.inFlight.value--
      deps.active.delete(active)
      let status = outcomeStatus !== 0 ? outcomeStatus : res.writableFinished ? res.statusCode : 499
      if (!res.writableFinished) {
        // A body that failed to parse is the client's fault, counted here once (not as 499 or an upstream error).
        const parseError = parseErrorStatus(req)
        if (parseError !== undefined) {
          status = parseError
          failure = undefined
        }
      }
      const seconds = (performance.now() - active.start) / 1000
      const recorder = active.domain === UNKNOWN_DOMAIN ? unknown : metrics.domain(active.domain)
      recorder.record(status, req.method ?? 'GET', seconds)
      if (failure !== undefined) recorder.upstreamError(failure)
      const log = deps.live.settings.accessLog
      if (log !== undefined) {
        if (active.requestId === '') active.requestId = ids.next()
        log.write(active, status, seconds, scheme, failure)
      }
    })

    try {
      const refused = refusedStatus(req)
      if (refused !== 0) {
        sendError(res, active, refused, 'stream' in res ? undefined : CONNECTION_CLOSE)
        return
      }
      const path = originFormPath(req)
      if (path === undefined) {
        sendError(res, active, 400, 'stream' in res ? undefined : CONNECTION_CLOSE)
        return
      }
      if (scheme === 'http' && deps.challenge !== undefined && deps.challenge(req as IncomingMessage, res)) return
      const host = req.headers.host ?? (req.headers[':authority'] as string | undefined)
      const entry = deps.routes.router.match(host)
      if (entry === undefined) {
        sendError(res, active, 404)
        return
      }
      const identity = identifyRouted(deps, req, scheme, host, entry, active, ids)
      const client = identity.client
      const route = entry.route

      const location = redirectLocation(deps, entry, identity, path)
      if (location !== undefined) {
        redirect(res, route.redirectTo !== undefined ? route.redirectCode : 308, location)
        return
      }

      const onError = (outcome: ForwardOutcome): void => {
        failure = outcome.failure
        outcomeStatus = outcome.status
        if (outcome.failure === 'client_abort') return
        deps.onUpstreamError?.(entry.domain, outcome)
        const suppressed = upstreamLog.admit(`${entry.domain} ${outcome.failure ?? ''}`)
        if (suppressed >= 0) deps.logger.warn('upstream failed', { domain: entry.domain, reason: outcome.failure, status: outcome.status, err: outcome.error, ...(suppressed > 0 ? { suppressed } : {}) })
        sendError(res, active, outcome.status)
      }
      const forward = (): void => {
        if (entry.chain !== undefined && deps.chainForward !== undefined) {
          active.upstream = entry.chain.url
          active.forwardedAt = performance.now()
          deps.chainForward(req, res, entry, client, onError, active)
          return
        }
        const target = route.target
        if (target === undefined) {
          sendError(res, active, 502)
          return
        }
        active.upstream = target.origin
        active.forwardedAt = performance.now()
        const headers = upstreamHeaders(req.rawHeaders, client, req.headers.connection)
        // A mulch-proxy child believes its parent's X-Forwarded-For only with the PSK
        // (mulchd's Chained routes, SPEC §10); the TOML's chain.psk of the moment.
        if (route.mulchChained === true) {
          const psk = deps.live.settings.config.chain.psk
          if (psk !== '') headers.push(MULCH_PSK_HEADER_NAME, psk)
        }
        deps.live.settings.forwarder.forward(req, res, target.origin, path, headers, onError, active)
      }

      admitClient(deps, entry, identity, res, forward, (retryAfter) => {
        sendError(res, active, 429, { 'retry-after': retryAfter })
      }, (err: unknown) => {
        deps.logger.error('request handler failed', { err })
        sendError(res, active, 500)
      })
    } catch (err) {
      deps.logger.error('request handler failed', { err })
      outcomeStatus = 500
      sendError(res, active, 500)
    }
  }
}

/**
 * Creates the `upgrade` listener: WebSockets go to the VM through http-proxy-3 (or
 * to a chain child), after the same checks as requests (SPEC §14): redirects, the
 * rate profile, whose concurrency slot an open WebSocket holds until it closes. An
 * upgrade counts in the in-flight gauge and the dump's `active` set from its
 * request until its tunnel closes: a WebSocket is one long request, and the gauge,
 * the dump and the concurrency slot then agree on what is open.
 */
export function createUpgradeHandler (deps: HandlerDeps, scheme: 'http' | 'https'): (req: IncomingMessage, socket: Duplex, head: Buffer) => void {
  const { metrics } = deps
  const ids = new RequestIds()
  return function handleUpgrade (req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => {})
    // The access log and the dump name the real client once it is known (the peer until then).
    const active = newActive(req)
    deps.active.add(active)
    metrics.inFlight.value++
    let finished = false
    let handedOff = false
    const finish = (status: number, failure?: UpstreamFailure): void => {
      if (finished) return
      finished = true
      metrics.inFlight.value--
      deps.active.delete(active)
      const recorder = metrics.domain(active.domain)
      const seconds = (performance.now() - active.start) / 1000
      recorder.record(status, req.method ?? 'GET', seconds)
      if (failure !== undefined) recorder.upstreamError(failure)
      const log = deps.live.settings.accessLog
      if (log !== undefined) {
        if (active.requestId === '') active.requestId = ids.next()
        // The client's socket carried this exchange alone: its counters are the tunnel's bytes, handshake included.
        const tcp = req.socket
        active.bytesIn = tcp.bytesRead
        active.bytesOut = tcp.bytesWritten
        log.write(active, status, seconds, scheme, failure)
      }
    }
    // Until a forwarder owns the tunnel (and reports its end), a client that leaves is recorded here.
    socket.once('close', () => { if (!handedOff) finish(499) })
    const refuse = (status: number, extraHeaders?: string): void => {
      writeRawResponse(socket, status, deps.live.settings.errorPages, extraHeaders)
      finish(status)
    }

    try {
      const refused = refusedStatus(req)
      if (refused !== 0) {
        refuse(refused)
        return
      }
      const path = originFormPath(req)
      if (path === undefined) {
        refuse(400)
        return
      }
      const host = req.headers.host
      const entry = deps.routes.router.match(host)
      if (entry === undefined) {
        refuse(404)
        return
      }
      const identity = identifyRouted(deps, req, scheme, host, entry, active, ids)
      const client = identity.client
      const route = entry.route

      const location = redirectLocation(deps, entry, identity, path)
      if (location !== undefined) {
        const code = route.redirectTo !== undefined ? route.redirectCode : 308
        writeRawRedirect(socket, code, location)
        finish(code)
        return
      }
      const chainUpgrade = entry.chain !== undefined ? deps.chainUpgrade : undefined
      const target = route.target
      if (chainUpgrade === undefined && (target === undefined || entry.chain !== undefined)) {
        refuse(502)
        return
      }

      const open = (): void => {
        handedOff = true
        active.upstream = chainUpgrade !== undefined ? entry.chain!.url : target!.origin
        active.forwardedAt = performance.now()
        if (chainUpgrade !== undefined) {
          chainUpgrade(req, socket, head, entry, client, (status, failure) => {
            if (failure !== undefined && failure !== 'client_abort') deps.logger.warn('websocket upstream failed', { domain: entry.domain, reason: failure, child: entry.chain?.child })
            finish(status, failure)
          })
          return
        }
        deps.live.settings.websockets.upgrade(req, socket, head, target!.origin, client, (status, failure) => {
          if (failure !== undefined && failure !== 'client_abort') deps.logger.warn('websocket upstream failed', { domain: entry.domain, reason: failure })
          finish(status, failure)
        }, { stats: active })
      }

      // The slot is released when the client socket closes: at the end of the tunnel.
      admitClient(deps, entry, identity, socket, open, (retryAfter) => {
        refuse(429, `Retry-After: ${retryAfter}\r\n`)
      }, (err: unknown) => {
        deps.logger.error('upgrade handler failed', { err })
        refuse(500)
      })
    } catch (err) {
      deps.logger.error('upgrade handler failed', { err })
      if (!handedOff) {
        refuse(500)
        return
      }
      // A forwarder that threw may never report: cut the tunnel and record it here.
      socket.destroy()
      finish(500)
    }
  }
}
