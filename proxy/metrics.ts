/**
 * @module proxy/metrics
 * Every Prometheus metric of the proxy (SPEC §9), on an injected registry. Labels
 * stay bounded: `domain` only takes values from the route table (anything else is
 * `_unknown`), `method` only standard methods (else `OTHER`). Label children are
 * cached per domain so the request path does no label hashing.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import { buildInfo } from './build-info.ts'

/** The `domain` label value of hosts outside the route table. */
export const UNKNOWN_DOMAIN = '_unknown'

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH', 'PROPFIND', 'PROPPATCH', 'MKCOL', 'COPY', 'MOVE', 'LOCK', 'UNLOCK'])

/** Request counters of one domain, with label children cached by code and method. */
export interface DomainRecorder {
  record (code: number, method: string, seconds: number): void
  upstreamError (reason: string): void
}

export interface ProxyMetrics {
  readonly registry: Registry
  /** The recorder of a domain from the route table, or of `_unknown`. */
  domain (name: string): DomainRecorder
  /** Drops the series of domains no longer in the table (keeps `_unknown`). */
  retainDomains (current: { has (domain: string): boolean }): void
  readonly inFlight: { value: number }
  readonly openConnections: { value: number }
  readonly routes: Gauge
  readonly routeReloads: Counter<'result'>
  /** The route file's part of `vmfront_config_last_reload_successful` (1 ok, 0 failed). */
  readonly lastReloadSuccessful: ReloadVerdict
  /** The TOML's part of `vmfront_config_last_reload_successful` (SIGHUP, SPEC §12). */
  readonly configReloadSuccessful: ReloadVerdict
  /** TOML reloads on SIGHUP, by result. */
  readonly configReloads: Counter<'result'>
  readonly lastReloadSuccessTimestamp: Gauge
  readonly rateLimited: Counter<'profile'>
  readonly acmeOrders: Counter<'result'>
  readonly chainChildren: Gauge
  readonly chainSessionResets: Counter<'child'>
  readonly chainAuthFailures: Counter
  /** Client HTTP/2 connections closed for abuse (rapid reset, floods), by reason. */
  readonly http2AbusiveConnections: Counter<'reason'>
  /** Chain registrations refused, by reason (`full`, `conflict`). */
  readonly chainRegistrationsRefused: Counter<'reason'>
  /** Workers (SPEC §12) that died and were replaced (primary). */
  readonly workerRestarts: Counter
  /** TCP forwards (SPEC §11), by listen port: accepted connections by result. */
  readonly tcpConnectionsTotal: Counter<'port' | 'result'>
  /** Bytes forwarded, by listen port and direction (`in` client to VM, `out` VM to client). */
  readonly tcpBytes: Counter<'port' | 'direction'>
  /** Run before each scrape of vmfront_tcp_bytes_total: live relays add the bytes they batch. */
  readonly tcpBytesFlushers: Set<() => void>
}

/** Creates the registry and every metric. One per proxy process (no globals). */
/** One part of a reload verdict gauge: the gauge shows the lowest part. */
export interface ReloadVerdict {
  set (value: number): void
}

export function createMetrics (options: { defaultMetrics?: boolean } = {}): ProxyMetrics {
  const registry = new Registry()
  if (options.defaultMetrics !== false) {
    collectDefaultMetrics({ register: registry })
    // prom-client exports these gauges with a counter's `_total` suffix, which
    // `promtool check metrics` rejects; the per-type gauges without it carry the same.
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) registry.removeSingleMetric(name)
  }
  const registers = [registry]
  const build = buildInfo()
  new Gauge({ name: 'vmfront_build_info', help: 'Always 1: the running version, its git commit (empty when unknown) and the Node version.', labelNames: ['version', 'commit', 'node'] as const, registers, aggregator: 'first' })
    .set({ version: build.version, commit: build.commit, node: build.node }, 1)

  const requests = new Counter({ name: 'vmfront_http_requests_total', help: 'HTTP requests answered, by route domain, status code and method.', labelNames: ['domain', 'code', 'method'] as const, registers })
  const duration = new Histogram({
    name: 'vmfront_http_request_duration_seconds',
    help: 'Time from request start to the end of the response, by route domain.',
    labelNames: ['domain'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers
  })
  const upstreamErrors = new Counter({ name: 'vmfront_upstream_errors_total', help: 'Failures talking to a VM or chain child, by domain and reason.', labelNames: ['domain', 'reason'] as const, registers })
  const inFlight = { value: 0 }
  const openConnections = { value: 0 }
  // eslint-disable-next-line no-new
  new Gauge({ name: 'vmfront_http_requests_in_flight', help: 'Requests being answered now.', registers, collect () { this.set(inFlight.value) } })
  // eslint-disable-next-line no-new
  new Gauge({ name: 'vmfront_open_connections', help: 'Client connections open now (HTTP and HTTPS listeners).', registers, collect () { this.set(openConnections.value) } })

  type RequestChild = ReturnType<typeof requests.labels>
  type ErrorChild = ReturnType<typeof upstreamErrors.labels>
  const recorders = new Map<string, DomainRecorder & { keys: Set<string> }>()

  function domain (name: string): DomainRecorder {
    let recorder = recorders.get(name)
    if (recorder !== undefined) return recorder
    const hist = duration.labels(name)
    const children = new Map<string, RequestChild>()
    const errors = new Map<string, ErrorChild>()
    const keys = new Set<string>()
    recorder = {
      keys,
      record (code: number, method: string, seconds: number): void {
        const m = METHODS.has(method) ? method : 'OTHER'
        const key = `${code} ${m}`
        let child = children.get(key)
        if (child === undefined) {
          child = requests.labels(name, String(code), m)
          children.set(key, child)
          keys.add(key)
        }
        child.inc()
        hist.observe(seconds)
      },
      upstreamError (reason: string): void {
        let child = errors.get(reason)
        if (child === undefined) {
          child = upstreamErrors.labels(name, reason)
          errors.set(reason, child)
        }
        child.inc()
      }
    }
    recorders.set(name, recorder)
    return recorder
  }

  function retainDomains (current: { has (domain: string): boolean }): void {
    for (const [name, recorder] of recorders) {
      if (name === UNKNOWN_DOMAIN || current.has(name)) continue
      for (const key of recorder.keys) {
        const [code, method] = key.split(' ')
        requests.remove(name, code, method)
      }
      duration.remove(name)
      recorders.delete(name)
    }
  }

  const routes = new Gauge({ name: 'vmfront_routes', help: 'Routes in the table being served (file routes plus chained domains).', registers, aggregator: 'first' })
  const routeReloads = new Counter({ name: 'vmfront_route_reloads_total', help: 'Route file loads, the one at start included, by result.', labelNames: ['result'] as const, registers, aggregator: 'first' })
  routeReloads.inc({ result: 'success' }, 0)
  routeReloads.inc({ result: 'failure' }, 0)
  // One verdict over both files a reload reads: a good route file must not hide a bad TOML (or the reverse).
  const reloadParts = { routes: 0, config: 1 }
  // eslint-disable-next-line no-new
  new Gauge({ name: 'vmfront_config_last_reload_successful', help: '1 if the last reload succeeded (the TOML on SIGHUP and the route file), 0 if either failed.', registers, aggregator: 'min', collect () { this.set(Math.min(reloadParts.routes, reloadParts.config)) } })
  const lastReloadSuccessful: ReloadVerdict = { set (value) { reloadParts.routes = value } }
  const configReloadSuccessful: ReloadVerdict = { set (value) { reloadParts.config = value } }
  const configReloads = new Counter({ name: 'vmfront_config_reloads_total', help: 'Reloads of the proxy TOML on SIGHUP, by result (failure: invalid, or a new listener address could not be bound).', labelNames: ['result'] as const, registers, aggregator: 'first' })
  configReloads.inc({ result: 'success' }, 0)
  configReloads.inc({ result: 'failure' }, 0)
  const lastReloadSuccessTimestamp = new Gauge({ name: 'vmfront_config_last_reload_success_timestamp_seconds', help: 'When the route table or the TOML was last loaded successfully (Unix time).', registers, aggregator: 'first' })
  const rateLimited = new Counter({ name: 'vmfront_rate_limited_total', help: 'Requests refused (429) by a rate profile (the reason is in the log).', labelNames: ['profile'] as const, registers })
  const acmeOrders = new Counter({ name: 'vmfront_acme_orders_total', help: 'ACME certificate orders, by result.', labelNames: ['result'] as const, registers })
  acmeOrders.inc({ result: 'success' }, 0)
  acmeOrders.inc({ result: 'failure' }, 0)
  const chainChildren = new Gauge({ name: 'vmfront_chain_children', help: 'Chain children with a live lease (parent).', registers, aggregator: 'first' })
  const chainSessionResets = new Counter({ name: 'vmfront_chain_session_resets_total', help: 'HTTP/2 sessions to a chain child torn down and replaced (parent).', labelNames: ['child'] as const, registers })
  const chainAuthFailures = new Counter({ name: 'vmfront_chain_auth_failures_total', help: 'Chain API or forwarded requests refused for a wrong or missing PSK.', registers })
  const http2AbusiveConnections = new Counter({ name: 'vmfront_http2_abusive_connections_total', help: 'Client HTTP/2 connections closed for abuse, by reason (rapid_reset, flood, continuation_flood).', labelNames: ['reason'] as const, registers })
  const chainRegistrationsRefused = new Counter({ name: 'vmfront_chain_registrations_refused_total', help: 'Chain registrations refused (parent), by reason: full (chain.max_children reached) or conflict.', labelNames: ['reason'] as const, registers })

  // With several workers (SPEC §12) the primary counts the replacements of dead ones.
  const workerRestarts = new Counter({ name: 'vmfront_worker_restarts_total', help: 'Worker processes that died and were replaced.', registers })
  const tcpConnectionsTotal = new Counter({ name: 'vmfront_tcp_connections_total', help: 'TCP connections accepted on forward ports, by listen port and result (forwarded, refused: source not allowed, failed: the VM did not answer).', labelNames: ['port', 'result'] as const, registers })
  const tcpBytesFlushers = new Set<() => void>()
  const tcpBytes = new Counter({
    name: 'vmfront_tcp_bytes_total',
    help: 'Bytes forwarded on TCP forward ports, by listen port and direction (in: client to VM, out: VM to client).',
    labelNames: ['port', 'direction'] as const,
    registers,
    collect () { for (const flush of tcpBytesFlushers) flush() }
  })

  return {
    registry,
    domain,
    retainDomains,
    inFlight,
    openConnections,
    routes,
    routeReloads,
    lastReloadSuccessful,
    configReloadSuccessful,
    configReloads,
    lastReloadSuccessTimestamp,
    rateLimited,
    acmeOrders,
    chainChildren,
    chainSessionResets,
    chainAuthFailures,
    http2AbusiveConnections,
    chainRegistrationsRefused,
    workerRestarts,
    tcpConnectionsTotal,
    tcpBytes,
    tcpBytesFlushers
  }
}

/**
 * What the gauges read at scrape time come from: parts built after the metrics (the
 * certificate manager, the rate limiter of the moment, the TCP forwarder). main.ts
 * registers these gauges once those parts exist, so no source is ever set or swapped
 * on an existing object.
 */
export interface ScrapeSources {
  /** The real certificates served, by routed domain. */
  certificateExpiries: () => Array<{ domain: string, notAfter: number }>
  /** Per rate profile, the client IPs holding rate-limit state. */
  rateTrackedIps: () => Array<{ profile: string, ips: number }>
  /** Per TCP forward listen port: connections now, and whether it listens. */
  tcpPorts: () => Array<{ port: string, connections: number, listening: boolean }>
}

/** Registers the scrape-time gauges on `metrics.registry` (once per registry). */
export function registerScrapeGauges (metrics: ProxyMetrics, sources: ScrapeSources): void {
  // Read at scrape time from the certificate manager, so the series follow the route
  // table (a user certificate for a name that is not routed is not exported).
  // eslint-disable-next-line no-new
  new Gauge({
    name: 'vmfront_certificate_expiry_timestamp_seconds',
    help: 'When the certificate served for a routed domain expires (Unix time).',
    labelNames: ['domain'] as const,
    registers: [metrics.registry],
    aggregator: 'first',
    collect () {
      this.reset()
      for (const { domain, notAfter } of sources.certificateExpiries()) this.set({ domain }, notAfter)
    }
  })
  // eslint-disable-next-line no-new
  new Gauge({
    name: 'vmfront_rate_limit_tracked_ips',
    help: 'Client IPs holding rate-limit state, by profile (idle state expires).',
    labelNames: ['profile'] as const,
    registers: [metrics.registry],
    collect () {
      this.reset()
      for (const { profile, ips } of sources.rateTrackedIps()) this.set({ profile }, ips)
    }
  })
  // Read from the live connection sets at scrape time: a count kept by +1/-1 drifts
  // when a path forgets one side (mulch-proxy's did).
  // eslint-disable-next-line no-new
  new Gauge({
    name: 'vmfront_tcp_connections',
    help: 'TCP connections being forwarded now, by listen port.',
    labelNames: ['port'] as const,
    registers: [metrics.registry],
    collect () {
      this.reset()
      for (const { port, connections } of sources.tcpPorts()) this.inc({ port }, connections)
    }
  })
  // eslint-disable-next-line no-new
  new Gauge({
    name: 'vmfront_tcp_listener_up',
    help: 'Whether a TCP forward port is listening (0: it could not be bound, see the log).',
    labelNames: ['port'] as const,
    registers: [metrics.registry],
    collect () {
      this.reset()
      for (const { port, listening } of sources.tcpPorts()) this.set({ port }, listening ? 1 : 0)
    }
  })
}
