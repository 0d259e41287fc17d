/**
 * @module proxy/main
 * Runs one proxy process, the composition root: builds the parts from the checked
 * config in dependency order, listens, and hands lifecycle.ts the steps of its drain
 * and the signal handlers (SIGHUP reload, SIGTERM/SIGINT drain, SIGUSR2 dump, SIGUSR1
 * log reopen). With lifecycle.ts, the only module with process-wide side effects.
 */
import { rmSync } from 'node:fs'
import type http from 'node:http'
import { Server as NetServer } from 'node:net'
import { availableParallelism } from 'node:os'
import type { ProxyConfig } from './config.ts'
import { createLineSink, type LineSink } from './line-sink.ts'
import { openLogFile } from './log-file.ts'
import { createLogger } from './log.ts'
import { createMetrics, registerScrapeGauges } from './metrics.ts'
import { prepareDataDir, writePidFile } from './process-files.ts'
import { answerPrimary, inheritedHandle, serverHandle, summedRegistry } from './worker-wiring.ts'
import { buildLiveSettings, liveErrorPages, type LiveHolder, type LiveParts } from './live-settings.ts'
import { createConfigReloader, retireListener, type ListenerName, type Rebound } from './config-reload.ts'
import { loadConfig } from './config.ts'
import type { ListenAddress } from './config-schema.ts'
import { createRequestHandler, createUpgradeHandler, type ActiveRequest, type HandlerDeps } from './handler.ts'
import { createRouteReloader } from './reload.ts'
import { createServedRoutes } from './served-routes.ts'
import { createListener, listenOn, type ManagedListener } from './server.ts'
import { buildDump, writeDump } from './dump.ts'
import { startExampleBackend } from './example-backend.ts'
import { ProxyError } from './errors.ts'
import type { ChainRuntime } from './chain/types.ts'
import { CertError, createCertManager, describeError, issuerKeyFromUrl, resolveDirectoryUrl } from '../certs/index.ts'
import { createMulchCertExport, type MulchCertExport } from './mulch-cert-export.ts'
import { hostnameProblem } from './route-table.ts'
import { createUpstreamErrorLog } from './upstream-errors.ts'
import { buildInfo } from './build-info.ts'
import type { ExtraCertsFailure, ReloadFailure, StatusPageInput, WorkerInfo } from './status-page.ts'
import type { ReloadStatus } from './reload.ts'
import { createPortReloader, createTcpForwarder } from './tcp-forward.ts'
import type { IpcPeer } from './worker-ipc.ts'
import { createRemoteRateLimiter, serveRateLimits } from './shared-rate-limit.ts'
import { createBroadcastChallengeStore, createRemoteIssuer, createSharedChallengeStore, followPrimaryCertificates, serveCertificates } from './shared-certs.ts'
import { createWorkerPool, type WorkerPool } from './worker-pool.ts'
import { bindListenHandle, handlePort, listenOnHandle, type ListenHandle } from './listen-handle.ts'
import { serveTakeover, type TakenOver, type TakeoverServer } from './takeover.ts'
import { createLifecycle, handleProcessSignals, TAKEOVER_REASON } from './lifecycle.ts'

/** A running proxy, for tests and the CLI. */
export interface RunningProxy {
  readonly ports: Record<string, number>
  /** Resolves with the exit code once the proxy has stopped. */
  readonly stopped: Promise<number>
  reload (): Promise<unknown>
  /** A stop signal: starts the drain; a second one exits at once. */
  shutdown (reason: string): void
  /**
   * Starts the drain unless one is running (never escalates): a worker's primary
   * asking, or going away, while systemd's SIGTERM already reached every process.
   */
  drain (reason: string): void
}

/** A sink for what a worker leaves to its primary to say. */
const DISCARD: LineSink = { write () {}, flush () {} }


function createCertManagerOrFail (options: Parameters<typeof createCertManager>[0]): ReturnType<typeof createCertManager> {
  try {
    return createCertManager(options)
  } catch (err) {
    if (err instanceof CertError) throw new ProxyError('CONFIG_INVALID', err.message, { cause: err })
    throw err
  }
}

/**
 * How this process takes part (SPEC §12): `single` serves everything itself; a
 * `primary` binds the listeners, runs the admin listener, the one rate limiter, the
 * ACME orders and the TCP forwards, and keeps `workers` processes serving HTTP; a
 * `worker` serves HTTP on the primary's sockets and asks it for what must be one.
 */
export type ProxyRole =
  | { kind: 'single' }
  | { kind: 'primary', workers: number, configArgs: readonly string[] }
  | { kind: 'worker', slot: number, primary: IpcPeer, handles: ReadonlyMap<string, ListenHandle> }

export interface StartOptions {
  handleSignals?: boolean
  /** `--takeover`: the running proxy's listening sockets, and how to make it drain (proxy/takeover.ts). */
  takeover?: TakenOver
  role?: ProxyRole
  /**
   * Reads and checks the TOML again on SIGHUP, from the same source(s) as at start
   * (the CLI passes its --config / --mulch-config loader); default: config.file.
   */
  loadConfig?: () => ProxyConfig
  /** Told when a SIGHUP changed `[server] workers`. */
  onWorkersChanged?: (workers: number) => void
}

/** Starts the proxy. Throws ProxyError on a start-up failure (port in use...). */
export async function startProxy (config: ProxyConfig, options: StartOptions = {}): Promise<RunningProxy> {
  const role: ProxyRole = options.role ?? { kind: 'single' }
  const worker = role.kind === 'worker' ? role : undefined
  const primaryRole = role.kind === 'primary' ? role : undefined
  const logFile = config.log.file === '' ? undefined : openLogFile(config.log.file)
  // Said on stdout, where an operator who finds nothing else (journalctl, docker logs) looks.
  if (logFile !== undefined && role.kind !== 'worker') process.stdout.write(JSON.stringify({ time: new Date().toISOString(), level: 'info', msg: 'logging to the file of log.file (reopened on SIGUSR1)', component: 'proxy', file: logFile.path }) + '\n')
  const sink = createLineSink(logFile ?? process.stdout)
  // What a SIGHUP may change, read per request through this one holder (live-settings.ts).
  // A worker's limiter asks the primary, where the one limiter of the proxy lives.
  const liveParts: LiveParts = worker === undefined ? {} : { makeLimiter: (profiles) => createRemoteRateLimiter(profiles, worker.primary), worker: worker.slot }
  const live: LiveHolder = { settings: buildLiveSettings(config, sink, undefined, liveParts).settings }
  const logger = createLogger({ level: () => live.settings.config.log.level, sink, base: worker === undefined ? { component: 'proxy' } : { component: 'proxy', worker: worker.slot } })
  const metrics = createMetrics()
  const errorPages = liveErrorPages(live)
  try {
    prepareDataDir(config.dataDir, logger)
  } catch (err) {
    // A read-only or missing data_dir must not stop serving: ACME retries and says why in /status.
    logger.error('data_dir is not usable: serving anyway', { dir: config.dataDir, reason: describeError(err) })
  }

  // The served table: the route file's entries and a chain parent's chained domains, merged there.
  const served = createServedRoutes({ logger, metrics })
  const holder = served.holder
  const active = new Set<ActiveRequest>()
  const limiter = (): LiveHolder['settings']['limiter'] => live.settings.limiter
  if (worker === undefined) for (const warning of config.warnings) logger.warn('config warning', { file: config.file, warning })
  // Sockets the primary binds for its workers (filled at start, before the pool starts).
  const poolHandles = new Map<string, ListenHandle>()
  // The primary's pool: built before the parts it serves, started once they exist.
  const pool: WorkerPool | undefined = primaryRole === undefined
    ? undefined
    : createWorkerPool({
      count: primaryRole.workers,
      configArgs: primaryRole.configArgs,
      handles: poolHandles,
      logger,
      attach: (peer, slot) => {
        const held = serveRateLimits(limiter, peer, () => pool?.slots().length ?? 1)
        serveCertificates(certs, peer)
        peer.handle('certs.fallback', () => certs.defaultSecureContextOptions())
        challenges?.replay(peer)
        peer.handle('upstream-error', (body) => {
          const e = body as { domain: string, reason?: string, status: number, message?: string }
          upstreamErrors.record(e.domain, e.reason, e.status, e.message === undefined ? undefined : new Error(e.message))
        })
        // A worker whose TOML reload moved a listener takes the primary's new socket.
        peer.handle('listen-handle', async (body) => {
          const name = (body as { name: string }).name
          const handle = poolHandles.get(name)
          if (handle !== undefined) await peer.sendHandle('listen', { name }, handle)
          return handle !== undefined
        })
        // The chain's one registry or registration, and the tickets its workers share (proxy/chain/shared.ts).
        const chainHeld = chain?.attachWorker?.(peer, slot)
        return { detach: () => { held.release(); chainHeld?.() } }
      },
      onRestart: () => { metrics.workerRestarts.inc() }
    })
  const challenges = pool === undefined ? undefined : createBroadcastChallengeStore((op, body) => { pool.broadcast(op, body) })
  const reloader = createRouteReloader({
    file: config.routesFile,
    served,
    // A worker reads the same file as its primary, which says how each load went: once, not N+1 times.
    // (Its outcome still shows in this worker's metrics, which /metrics does not sum: the primary's count.)
    logger: worker === undefined ? logger : createLogger({ level: 'error', sink: DISCARD, base: {} }),
    metrics,
    hasProfile: (name) => limiter().hasProfile(name)
  })

  // TCP port forwards (SPEC §11): the port file plus the route file's `ports`.
  // A worker leaves them to its primary: one listener per forward port.
  const tcp = createTcpForwarder({ logger: logger.child({ component: 'tcp' }), metrics, connectTimeoutMs: config.timeouts.connectMs, idleTimeoutMs: config.timeouts.tcpIdleMs, inherited: (key) => options.takeover?.handles.get(key) })
  const portReloader = createPortReloader({ file: config.portsFile, forwarder: tcp, logger: logger.child({ component: 'tcp' }) })

  // A worker presents its primary's self-signed fallback (and starts sooner without making one).
  const fallback = worker === undefined ? undefined : await worker.primary.request<{ key: string, cert: string }>('certs.fallback', undefined, 10_000)
  const certs = createCertManagerOrFail({
    ...(fallback === undefined ? {} : { fallback }),
    storageDir: config.dataDir,
    acme: { enabled: config.acme.enabled, directoryUrl: config.acme.directoryUrl, email: config.acme.email, caFile: config.acme.caFile === '' ? undefined : config.acme.caFile, profile: config.acme.profile },
    extraCertsFile: config.tls.extraCertsFile === '' ? undefined : config.tls.extraCertsFile,
    // Never order for an arbitrary SNI name: only for domains we route (chained ones included)
    // that are DNS names (a Mulch file may route "my_app.example.com": served, never ordered),
    // or that the config names (acme.extra_domains: mulchd's listen_https_domain).
    ...(worker === undefined ? {} : {
      challenges: createSharedChallengeStore(worker.primary),
      issuer: config.acme.enabled ? createRemoteIssuer(issuerKeyFromUrl(resolveDirectoryUrl(config.acme.directoryUrl)), worker.primary) : undefined
    }),
    ...(challenges === undefined ? {} : { challenges }),
    policy: (domain) => (holder.router.has(domain) && hostnameProblem(domain) === undefined) || config.acme.extraDomains.includes(domain) || served.isOwnHost(domain),
    logger: logger.child({ component: 'certs' })
  })
  // A worker's "orders" are the primary's, counted there once.
  if (worker === undefined) certs.on('order', (e) => { metrics.acmeOrders.inc({ result: e.result }) })
  if (pool !== undefined) certs.on('certificate', (e) => { if (!e.removed) pool.broadcast('acme.certificate', { domain: e.domain }) })
  if (worker !== undefined) followPrimaryCertificates(certs, worker.primary, (domain, reason) => { logger.warn('cannot fetch a certificate from the primary', { domain, reason }) })
  // The gauges read at scrape time, now that their sources exist.
  registerScrapeGauges(metrics, {
    certificateExpiries: () => certs.status()
    .filter((c) => c.source !== 'self-signed' && (holder.router.has(c.domain) || served.isOwnHost(c.domain)))
    .map((c) => ({ domain: c.domain, notAfter: Math.floor(Date.parse(c.notAfter) / 1000) }))
    .filter((c) => Number.isFinite(c.notAfter)),
    rateTrackedIps: () => limiter().snapshot({ top: 0 }).filter((p) => p.limited).map((p) => ({ profile: p.name, ips: p.trackedIps })),
    tcpPorts: () => tcp.portCounts()
  })

  const listeners: ManagedListener[] = []
  const ports: Record<string, number> = {}
  // For the status page: the reloader only keeps its latest attempt, an operator wants the last failure too.
  const upstreamErrors = createUpstreamErrorLog()
  let lastReloadFailure: ReloadFailure | undefined
  let extraCertsFailure: ExtraCertsFailure | undefined
  const noteReload = (s: ReloadStatus): void => {
    if (s.result === 'failure') lastReloadFailure = { at: s.at ?? new Date().toISOString(), errorCount: s.errorCount, errors: s.errors.slice(0, 20) }
  }
  let exampleBackend: http.Server | undefined
  let mulchCerts: MulchCertExport | undefined
  let admin: http.Server | undefined
  let ready = false

  // What a failed start undoes, whichever phase failed; then the error, in words.
  const failStart = async (err: unknown): Promise<never> => {
    await pool?.stop('start-up failed')
    for (const handle of poolHandles.values()) handle.close()
    await certs.stop().catch(() => {})
    for (const l of listeners) l.destroyAll()
    for (const l of listeners) l.stopAccepting()
    admin?.close()
    exampleBackend?.close()
    sink.flush()
    const e = err as NodeJS.ErrnoException & { address?: string, port?: number }
    if (err instanceof CertError && (err.code === 'CERTS_EXTRA_INVALID' || err.code === 'CERTS_EXTRA_UNREADABLE' || err.code === 'CERTS_CONFIG_INVALID')) {
      throw new ProxyError('CONFIG_INVALID', err.message, { cause: err })
    }
    throw new ProxyError('PROXY_UNAVAILABLE', e.code === 'EADDRINUSE' || e.code === 'EACCES'
      ? `cannot listen on ${e.address ?? ''}:${e.port ?? ''}: ${e.code === 'EACCES' ? 'permission denied (ports under 1024 need CAP_NET_BIND_SERVICE)' : 'address already in use'}`
      : `start-up failed: ${e.message}`, { cause: err })
  }

  // The routes, then the chain (a parent's chained domains join the served table):
  // everything built after this sees a chain that exists, or none.
  const chain: ChainRuntime | undefined = await (async () => {
    try {
      if (config.exampleBackend !== undefined && worker === undefined) exampleBackend = await startExampleBackend(config.exampleBackend)
      noteReload(await reloader.reload('start'))
      if (config.chain.mode === 'none') return undefined
      const runtime = await (await import('./chain/index.ts')).startChain({
        config, logger, metrics, routeTable: () => reloader.table(), served, hasProfile: (name) => limiter().hasProfile(name),
        // With workers, the primary keeps the chain's one API, registry or registration (proxy/chain/shared.ts).
        ...(role.kind === 'single' ? {} : { workers: role.kind === 'primary' ? { role: 'primary' as const } : { role: 'worker' as const, slot: role.slot, primary: role.primary } }),
        // An https:// chain API serves the certificate manager's certificates (parent_url's host is in ownHosts).
        tls: { ...certs.defaultSecureContextOptions(), SNICallback: certs.sniCallback.bind(certs) }
      })
      if (runtime !== undefined) {
        served.serveChained(runtime.entries())
        served.setOwnHosts(runtime.ownHosts?.() ?? [])
      }
      return runtime
    } catch (err) {
      return await failStart(err)
    }
  })()

  const dumpSources = {
    active,
    connections: () => ({ ...Object.fromEntries(listeners.map((l) => [l.name, l.openSockets()])), tcp_forwards: tcp.openConnections() }),
    routes: () => reloader.status(),
    chain: () => chain?.status(),
    rateLimits: () => limiter().snapshot()
  }
  const dump = async (): Promise<string> => {
    const fromWorkers = pool === undefined ? undefined : (await pool.gather<object>('dump')).map((w) => ({ ...w.value, worker: w.slot }))
    // A primary's chain status asks its workers (their sessions).
    const chainNow = await chain?.status()
    const file = await writeDump(config.dataDir, { ...dumpSources, chain: () => chainNow }, fromWorkers)
    logger.info('diagnostic dump written', { file })
    return file
  }
  const ownInfo = (roleName: string): WorkerInfo => ({ pid: process.pid, role: roleName, uptimeS: Math.round(process.uptime()), rssBytes: process.memoryUsage.rss(), inFlight: active.size, connections: dumpSources.connections() })
  const requestsServed = async (): Promise<number> => {
    const values = (await metrics.registry.getSingleMetric('vmfront_http_requests_total')?.get())?.values ?? []
    return values.reduce((n, v) => n + v.value, 0)
  }
  const workers = async (): Promise<WorkerInfo[]> => {
    if (pool === undefined) return [ownInfo('proxy (single process)')]
    const stats = new Map((await pool.gather<WorkerInfo>('stats')).map((w) => [w.slot, w.value]))
    // A worker still loading (a replacement) is listed too, with what is known of it.
    return [ownInfo('primary'), ...pool.slots().map((slot) => ({
      ...(stats.get(slot.slot) ?? { pid: slot.pid, uptimeS: Math.round((Date.now() - slot.startedAt) / 1000), rssBytes: 0, inFlight: 0, connections: {} }),
      role: stats.has(slot.slot) ? `worker ${slot.slot}` : `worker ${slot.slot} (starting)`,
      restarts: slot.restarts
    }))]
  }
  const inFlightTotal = (ws: WorkerInfo[]): number => ws.reduce((n, w) => n + w.inFlight, 0)
  const chainStatus = async (): Promise<StatusPageInput['chain']> => ({ mode: config.chain.mode, ...(await chain?.status() as object | undefined) })
  const status = async (): Promise<unknown> => {
    const ws = await workers()
    return {
    version: 1,
    pid: process.pid,
    uptime_s: Math.round(process.uptime()),
    listeners: ports,
    reload: reloader.status(),
    reload_last_failure: lastReloadFailure,
    extra_certs_last_failure: extraCertsFailure,
    routes: reloader.table().routes.map((r) => ({ domain: r.domain, target: r.target?.origin, redirect_to: r.redirectTo, vm: r.vm, rate_profile: r.rateProfile ?? 'default' })),
    in_flight: inFlightTotal(ws),
    rate_limits: limiter().snapshot({ top: 0 }).filter((p) => p.limited).map(({ top: _top, ...p }) => p),
    certificates: certs.status(),
    acme: certs.acmeStatus(),
    chain: await chainStatus(),
    tcp_ports: tcp.status(),
    upstream_errors: {
      total: upstreamErrors.total(),
      by_domain: upstreamErrors.byDomain(50).map((d) => ({ ...d, last: { ...d.last, at: new Date(d.last.at).toISOString() } })),
      recent: upstreamErrors.recent(20).map((e) => ({ ...e, at: new Date(e.at).toISOString() }))
    },
    workers: ws.map((w) => ({ pid: w.pid, role: w.role, uptime_s: w.uptimeS, rss_bytes: w.rssBytes, in_flight: w.inFlight, connections: w.connections, ...(w.requests === undefined ? {} : { requests: w.requests }), ...(w.restarts === undefined ? {} : { restarts: w.restarts }) }))
    }
  }
  const page = async (): Promise<StatusPageInput> => ({
    now: Date.now(),
    build: buildInfo(),
    listeners: ports,
    reload: reloader.status(),
    lastReloadFailure,
    extraCertsFailure,
    routes: reloader.table().routes,
    certificates: certs.status(),
    acme: certs.acmeStatus(),
    chain: await chainStatus(),
    rateLimits: limiter().snapshot({ top: 10 }),
    upstreamErrors,
    workers: await workers(),
    portForwards: tcp.status().flatMap((p) => p.forwards.map((f) => ({
      listen: p.listen,
      target: `${f.target}${f.proxy_protocol === 0 ? '' : ` (PROXY v${f.proxy_protocol})`}`,
      state: p.listening ? `listening, ${p.connections} open, from ${f.allow.length === 0 ? 'anyone' : f.allow.join(' ')}` : `not bound: ${p.error ?? 'unknown reason'}`
    })))
  })

  // The admin listener (hono, the status page) and the chain are loaded where they run:
  // a worker, which has neither, is smaller by their code (SPEC §12's memory goals).
  const adminModule = worker === undefined ? await import('./admin.ts') : undefined
  const adminApp = adminModule?.createAdminApp({ registry: pool === undefined ? metrics.registry : summedRegistry(metrics, pool), healthy: () => ready && reloader.status().lastSuccessAt !== undefined, status, page, dump, chainForget: () => chain?.forget })
  const deps: HandlerDeps = {
    routes: holder,
    live,
    metrics,
    logger,
    // Read at redirect time: the https listener is bound (and learns a port 0's real port) after the handlers exist.
    httpsPort: () => ports.https,
    active,
    challenge: (req, res) => certs.handleHttpChallenge(req, res as http.ServerResponse),
    // A worker's go to its primary too, whose /status and page show the whole proxy's.
    onUpstreamError: worker === undefined
      ? (domain, outcome) => { upstreamErrors.record(domain, outcome.failure, outcome.status, outcome.error) }
      : (domain, outcome) => { worker.primary.notify('upstream-error', { domain, reason: outcome.failure, status: outcome.status, message: outcome.error?.message }) },
    // The chain has started by now: the handler's parts are complete from the start.
    ...(chain === undefined ? {} : { chainForward: chain.forward, fromChainParent: chain.fromParent, chainParentRedirects: chain.parentRedirects, chainUpgrade: chain.upgrade })
  }
  /** Creates and binds the http or https listener (at start, and when a SIGHUP moves it). */
  const openListener = async (name: 'http' | 'https', address: ListenAddress, handle?: ListenHandle): Promise<{ listener: ManagedListener, port: number }> => {
    const tls = name === 'https' ? { ...certs.defaultSecureContextOptions(), SNICallback: certs.sniCallback.bind(certs) } : undefined
    const listener = createListener(name, live.settings.listenerOptions, createRequestHandler(deps, name), createUpgradeHandler(deps, name), { metrics, errorPages, logger }, tls)
    // A chain child's parent may come over h2 on https (an https:// child_url), or h2c on http.
    chain?.attachListener?.(listener.server as http.Server)
    try {
      return { listener, port: handle === undefined ? await listener.listen(address) : await listener.listenHandle(handle) }
    } catch (err) {
      listener.stopAccepting()
      throw err
    }
  }

  try {
    await certs.start()
    // mulchd's HTTPS API reads its certificate from data_dir/certs/<listen_https_domain>.
    if (worker === undefined) {
      mulchCerts = createMulchCertExport({ certs, dataDir: config.dataDir, domains: config.acme.extraDomains, logger: logger.child({ component: 'certs' }) })
      await mulchCerts.syncAll()
    }
    for (const name of ['https', 'http'] as const) {
      const address = config.listen[name]
      if (address === undefined) continue
      if (pool !== undefined) {
        // The primary binds; its workers serve.
        const handle = inheritedHandle(options.takeover, name, address) ?? bindListenHandle(address, logger, name)
        poolHandles.set(name, handle)
        ports[name] = handlePort(handle)
        continue
      }
      const { listener, port } = await openListener(name, address, worker?.handles.get(name) ?? inheritedHandle(options.takeover, name, address))
      ports[name] = port
      listeners.push(listener)
    }
    // Every worker listens before the admin says healthy.
    await pool?.start()
    if (config.listen.admin !== undefined && adminModule !== undefined && adminApp !== undefined) {
      admin = adminModule.createAdminServer(adminApp)
      const handle = inheritedHandle(options.takeover, 'admin', config.listen.admin)
      ports.admin = handle === undefined ? await listenOn(admin, config.listen.admin, logger, 'admin') : await listenOnHandle(admin, handle)
    }
  } catch (err) {
    return await failStart(err)
  }


  // After the routes and listeners: a port that cannot be bound is logged, not fatal.
  if (worker === undefined) await portReloader.reload(reloader.table().ports)

  if (worker === undefined) try {
    writePidFile(config.pidFile, logger, options.takeover?.pid)
  } catch (err) {
    // A full disk must not stop serving; only the daemon's signals cannot find this proxy.
    rmSync(`${config.pidFile}.tmp`, { force: true })
    logger.error('cannot write the pid file: serving anyway, but the daemon cannot signal this proxy', { file: config.pidFile, reason: describeError(err) })
  }
  ready = true
  if (worker !== undefined) logger.debug('worker serving', { pid: process.pid, listeners: ports })
  else logger.info('vmfront proxy started', {
    pid: process.pid,
    config: config.file,
    listeners: ports,
    routes: holder.router.size,
    ...(pool === undefined ? {} : { workers: pool.slots().map((w) => w.pid) }),
    try: ports.http !== undefined && config.exampleBackend !== undefined ? `curl http://localhost:${ports.http}/` : undefined
  })
  if (options.takeover !== undefined) {
    // Serving on the sockets now (and the PID file is ours): the old process may drain.
    await options.takeover.drain()
    logger.info('took over: the previous process drains and exits', { previous_pid: options.takeover.pid })
    const used = new Set([...poolHandles.values(), ...listeners.map(serverHandle), serverHandle({ server: admin }), ...tcp.handles().values()])
    for (const [name, handle] of options.takeover.handles) if (!used.has(handle)) { logger.debug('inherited socket not used (its address changed)', { listener: name }); handle.close() }
  }
  let takeoverServer: TakeoverServer | undefined
  // How this process ends (lifecycle.ts decides when; these are the parts' own steps).
  const lifecycle = createLifecycle({
    logger,
    sink,
    worker: worker !== undefined,
    pidFile: config.pidFile,
    drainMs: () => live.settings.config.timeouts.drainMs,
    handleSignals: options.handleSignals !== false,
    routesFile: config.routesFile,
    steps: {
      stopAccepting: async (reason, handedOver) => {
        ready = false
        takeoverServer?.close()
        for (const l of listeners) l.stopAccepting({ keepIdle: handedOver })
        // The admin socket is the new process's from now on (a plain drain keeps it for /status).
        if (handedOver && admin !== undefined) NetServer.prototype.close.call(admin)
        tcp.stopAccepting()
        // Every worker stops accepting, then the primary's copies of the sockets close:
        // a new client is refused from here on (after a takeover, the new process serves it).
        await pool?.beginStop(reason)
        for (const handle of poolHandles.values()) handle.close()
      },
      beginDrain: async (reason, drainMs) => {
        // A child deregisters first: with workers, their drain (GOAWAY to the parent) waits for no one.
        await chain?.beginShutdown().catch((err: unknown) => { logger.warn('chain deregistration failed', { err }) })
        // Workers drain their own requests (each within timeouts.drain) and exit.
        await pool?.stop(reason, drainMs + 5000)
      },
      inFlight: () => active.size,
      openConnections: () => listeners.reduce((n, l) => n + l.openSockets(), 0) + tcp.openConnections(),
      closeIdle: () => { for (const l of listeners) l.closeIdle() },
      release: async () => {
        for (const l of listeners) l.destroyAll()
        tcp.destroyAll()
        await chain?.stop().catch((err: unknown) => { logger.warn('chain stop failed', { err }) })
        await new Promise<void>((resolve) => { admin === undefined ? resolve() : admin.close(() => { resolve() }); admin?.closeAllConnections() })
        exampleBackend?.close()
        exampleBackend?.closeAllConnections()
        live.settings.websockets.close()
        live.settings.limiter.close()
        mulchCerts?.stop()
        // An ACME order in flight may take tens of seconds: it is not worth holding the exit.
        await Promise.race([certs.stop().catch(() => {}), new Promise((resolve) => setTimeout(resolve, 2000).unref())])
        await live.settings.forwarder.close().catch(() => {})
        await reloader.close().catch(() => {})
      },
      kill: () => { pool?.kill() },
      readPending: () => reloader.readPending()
    }
  })
  const { drain, shutdown } = lifecycle

  // A later `--takeover` asks here for the sockets this process serves.
  if (worker === undefined) {
    takeoverServer = await serveTakeover(config.pidFile, {
      handles: () => {
        const out = new Map<string, ListenHandle>(poolHandles)
        for (const l of listeners) { const h = serverHandle(l); if (h !== undefined) out.set(l.name, h) }
        const a = serverHandle({ server: admin })
        if (a !== undefined) out.set('admin', a)
        for (const [key, h] of tcp.handles()) out.set(key, h)
        return out
      },
      drain: (newPid) => { drain(`${TAKEOVER_REASON} ${newPid}`) },
      log: (msg, fields) => { logger.info(msg, fields) }
    }).catch((err: unknown) => {
      logger.warn('cannot listen for a takeover: `vmfront proxy --takeover` will not find this process', { pid_file: config.pidFile, reason: describeError(err) })
      return undefined
    })
  }


  /**
   * Binds listener `name` beside the running one (SIGHUP moved it); commit puts it
   * in service and lets the old one drain: it stops accepting, its open connections
   * are served until they end or timeouts.drain is over.
   */
  const rebind = async (name: ListenerName, address: ListenAddress | undefined): Promise<Rebound> => {
    const drainMs = (): number => live.settings.config.timeouts.drainMs
    // A worker has no admin listener; a primary's own admin moves as a single process's does.
    if (name === 'admin' && worker !== undefined) return { port: undefined, abort () {}, commit () {} }
    if (name !== 'admin' && pool !== undefined) {
      // The primary binds the new socket; each worker takes it in its own reload, which follows.
      const handle = address === undefined ? undefined : bindListenHandle(address, logger, name)
      return {
        port: handle === undefined ? undefined : handlePort(handle),
        abort: () => { handle?.close() },
        commit: () => {
          const old = poolHandles.get(name)
          if (handle === undefined) { poolHandles.delete(name); delete ports[name] } else { poolHandles.set(name, handle); ports[name] = handlePort(handle) }
          // The workers keep their copies of the old socket until they have moved.
          old?.close()
        }
      }
    }
    if (name === 'admin') {
      const next = address === undefined || adminModule === undefined || adminApp === undefined ? undefined : adminModule.createAdminServer(adminApp)
      const port = next === undefined ? undefined : await listenOn(next, address!, logger, 'admin')
      return {
        port,
        abort: () => { next?.close() },
        commit: () => {
          const old = admin
          admin = next
          if (port === undefined) delete ports.admin
          else ports.admin = port
          old?.close()
          setTimeout(() => { old?.closeAllConnections() }, drainMs()).unref()
        }
      }
    }
    // A worker asks its primary for the socket the primary's own reload just bound.
    if (worker !== undefined && address !== undefined && !(await worker.primary.request<boolean>('listen-handle', { name }, 10_000))) throw new ProxyError('PROXY_UNAVAILABLE', `the primary has no socket for listen.${name}`)
    const opened = address === undefined ? undefined : await openListener(name, address, worker?.handles.get(name))
    return {
      port: opened?.port,
      abort: () => { opened?.listener.stopAccepting() },
      commit: () => {
        const old = listeners.find((l) => l.name === name)
        if (old !== undefined) listeners.splice(listeners.indexOf(old), 1)
        if (opened === undefined) delete ports[name]
        else {
          listeners.push(opened.listener)
          ports[name] = opened.port
        }
        if (old !== undefined) void retireListener(old, drainMs())
      }
    }
  }
  // How a TOML reload went is told once, by the primary, after every worker applied
  // it (a worker reads the same file): its lines wait until then.
  const heldLines: string[] = []
  const configLogger = worker !== undefined
    ? createLogger({ level: 'error', sink: DISCARD, base: {} })
    : pool !== undefined
      ? createLogger({ level: () => live.settings.config.log.level, sink: { write (line) { heldLines.push(line) }, flush () {} }, base: { component: 'proxy' } })
      : logger
  const configReloader = createConfigReloader({
    started: config,
    load: options.loadConfig ?? (() => loadConfig(config.file === '<embedded default>' ? undefined : config.file)),
    live,
    sink,
    logger: configLogger,
    metrics,
    rebind,
    listeners: () => listeners,
    // Routes resolve their profile names at load: the next route reload re-reads the file.
    onRateProfilesChanged: () => { reloader.forget() },
    // Before the chain's own reload (a child re-registers with the new PSK).
    onChainSettingsChanged: (next) => { chain?.applySettings({ psk: next.psk, pingIntervalMs: next.pingIntervalMs, pingTimeoutMs: next.pingTimeoutMs }) },
    // With a pool the count changes live; one process cannot grow workers without a restart.
    onWorkersChanged: (n) => {
      options.onWorkersChanged?.(n)
      if (worker !== undefined) return
      const count = n === 0 ? availableParallelism() : n
      if (pool !== undefined) pool.resize(count)
      else if (count !== 1) logger.warn('config change needs a restart (vmfront proxy --takeover)', { key: 'server.workers', reason: 'this process serves alone; a takeover starts the workers' })
    },
    parts: liveParts
  })

  // The TOML first (a new rate profile must exist before routes name it); a bad TOML
  // does not hold the route file, port file and certificates the daemon relies on.
  const reload = async (): Promise<unknown> => {
    await configReloader.reload().catch((err: unknown) => { logger.error('config reload failed', { err }) })
    // Workers next (their TOML, routes and certificates): once the primary says
    // "routes loaded", every worker serves the new table.
    await pool?.gather('reload', undefined, 60_000)
    for (const line of heldLines.splice(0)) sink.write(line)
    const result = await reloader.reload('SIGHUP')
    noteReload(result)
    await portReloader.reload(reloader.table().ports)
    await certs.loadExtraCerts().catch((err: unknown) => {
      extraCertsFailure = { at: new Date().toISOString(), message: describeError(err) }
      logger.error('extra certificates reload failed: keeping the previous set', { file: config.tls.extraCertsFile, err })
    })
    await chain?.reload().catch((err: unknown) => { logger.warn('chain re-registration failed', { err }) })
    return result
  }
  // logrotate's postrotate (SIGUSR1, to the primary, which passes it on to its workers).
  function reopenLog (): void {
    pool?.broadcast('reopen-log')
    if (logFile === undefined) return
    sink.flush()
    try {
      logFile.reopen()
      logger.info('log file reopened', { file: logFile.path })
    } catch (err) {
      logger.error('cannot reopen the log file: still writing to the previous one', { file: logFile.path, reason: describeError(err) })
    }
  }
  if (worker !== undefined) answerPrimary(worker.primary, {
    reload,
    shutdown: drain,
    reopenLog,
    stats: async () => ({ ...ownInfo('worker'), requests: await requestsServed() }),
    metrics: async () => await metrics.registry.getMetricsAsJSON(),
    dump: () => buildDump(dumpSources)
  })
  if (options.handleSignals !== false) handleProcessSignals({
    // A reload started while draining would only hold the exit.
    reload: () => { if (!lifecycle.stopping()) void reload() },
    shutdown,
    ...(worker === undefined ? { dump: () => { dump().catch((err: unknown) => { logger.error('diagnostic dump failed', { err }) }) } } : {}),
    reopenLog
  })

  return { ports, stopped: lifecycle.stopped, reload, shutdown, drain }
}
