/**
 * @module proxy/config-reload
 * SIGHUP for the proxy's own TOML (SPEC §12): read and check it from the same
 * source(s) as at start, compare it with the running one, apply every key that can
 * change live (one swap of the LiveSettings reference, listeners moved by binding
 * the new address before the old one stops accepting), and name each key that
 * needs a restart. An invalid TOML, or a new address that cannot be bound, keeps
 * the whole running configuration and counts as a failed reload.
 */
import { readFileSync } from 'node:fs'
import type { ProxyConfig } from './config.ts'
import type { ListenAddress } from './config-schema.ts'
import type { LineSink } from './line-sink.ts'
import type { Logger } from './log.ts'
import type { ProxyMetrics } from './metrics.ts'
import type { ManagedListener } from './server.ts'
import { FileInvalidError, ProxyError } from './errors.ts'
import { buildLiveSettings, type LiveHolder, type LiveParts, type LiveSettings, type RetiredParts } from './live-settings.ts'
import { lineOfKey, tomlKeyAtLine, tomlKeyLines } from './toml-positions.ts'

export type ListenerName = 'http' | 'https' | 'admin'

/** One TOML key: whether a SIGHUP applies it, and how to read it from a ProxyConfig. */
interface KeyRule {
  readonly key: string
  readonly live: boolean
  readonly get: (c: ProxyConfig) => unknown
}

const live = (key: string, get: KeyRule['get']): KeyRule => ({ key, live: true, get })
const restart = (key: string, get: KeyRule['get']): KeyRule => ({ key, live: false, get })

/**
 * Every key of the TOML (test/proxy/config-reload-diff.test.ts checks none is
 * missing), classified. Restart keys are those whose state is built once at start
 * (data dir, pid file, the ACME account, the chain runtime and its sessions (its PSK
 * and keepalive excepted), the
 * TCP forwarder, the log file) or read by a reloader bound to its file at start.
 */
export const KEY_RULES: readonly KeyRule[] = [
  restart('data_dir', (c) => c.dataDir),
  restart('routes_file', (c) => c.routesFile),
  restart('pid_file', (c) => c.pidFile),
  restart('example_backend', (c) => c.exampleBackend),
  restart('ports_file', (c) => c.portsFile),
  live('listen.http', (c) => c.listen.http),
  live('listen.https', (c) => c.listen.https),
  live('listen.admin', (c) => c.listen.admin),
  restart('acme.enabled', (c) => c.acme.enabled),
  restart('acme.directory_url', (c) => c.acme.directoryUrl),
  restart('acme.email', (c) => c.acme.email),
  restart('acme.ca_file', (c) => c.acme.caFile),
  restart('acme.profile', (c) => c.acme.profile),
  restart('acme.extra_domains', (c) => c.acme.extraDomains),
  restart('tls.extra_certs_file', (c) => c.tls.extraCertsFile),
  restart('chain.mode', (c) => c.chain.mode),
  restart('chain.parent_url', (c) => c.chain.parentUrl),
  restart('chain.child_url', (c) => c.chain.childUrl),
  restart('chain.name', (c) => c.chain.name),
  live('chain.psk', (c) => c.chain.psk),
  restart('chain.lease_ttl', (c) => c.chain.leaseTtlMs),
  live('chain.ping_interval', (c) => c.chain.pingIntervalMs),
  live('chain.ping_timeout', (c) => c.chain.pingTimeoutMs),
  restart('chain.max_concurrent_streams', (c) => c.chain.maxConcurrentStreams),
  restart('chain.idle_timeout', (c) => c.chain.idleTimeoutMs),
  restart('chain.connect_timeout', (c) => c.chain.connectTimeoutMs),
  restart('chain.max_children', (c) => c.chain.maxChildren),
  restart('chain.parent_protocol', (c) => c.chain.parentProtocol),
  live('headers.trusted_proxies', (c) => c.headers.trustedProxies),
  live('timeouts.connect', (c) => c.timeouts.connectMs),
  live('timeouts.upstream_response', (c) => c.timeouts.upstreamResponseMs),
  live('timeouts.upstream_idle', (c) => c.timeouts.upstreamIdleMs),
  live('timeouts.request_headers', (c) => c.timeouts.requestHeadersMs),
  live('timeouts.client_idle', (c) => c.timeouts.clientIdleMs),
  live('timeouts.websocket_idle', (c) => c.timeouts.websocketIdleMs),
  restart('timeouts.tcp_idle', (c) => c.timeouts.tcpIdleMs),
  live('timeouts.drain', (c) => c.timeouts.drainMs),
  live('upstream.keepalive', (c) => c.upstream.keepAliveMs),
  live('upstream.max_connections_per_target', (c) => c.upstream.maxConnectionsPerTarget),
  live('limits.max_header_bytes', (c) => c.limits.maxHeaderBytes),
  live('limits.max_requests_per_connection', (c) => c.limits.maxRequestsPerConnection),
  live('server.workers', (c) => c.server.workers),
  live('log.level', (c) => c.log.level),
  live('log.access', (c) => c.log.access),
  restart('log.file', (c) => c.log.file),
  live('error_pages.template', (c) => c.errorPages.template),
  live('rate_profile', (c) => c.rateProfiles)
]

/** What a new config changes: live keys against the settings served, restart keys against the process's start. */
export interface ConfigDiff {
  readonly live: readonly string[]
  readonly restart: readonly string[]
}

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b)

/**
 * Classifies what `next` changes. Live keys are compared with `served` (the last
 * config applied), restart keys with `started` (the config the process runs on):
 * a restart key stays reported on every reload until a restart applies it.
 */
export function diffConfig (started: ProxyConfig, served: ProxyConfig, next: ProxyConfig): ConfigDiff {
  return {
    live: KEY_RULES.filter((r) => r.live && !same(r.get(served), r.get(next))).map((r) => r.key),
    restart: KEY_RULES.filter((r) => !r.live && !same(r.get(started), r.get(next))).map((r) => r.key)
  }
}

/** A config problem located for the log: file, line (when known) and dotted key. */
export interface LocatedProblem {
  readonly file: string
  readonly line?: number
  readonly key: string
  readonly message: string
}

/**
 * Locates the problems of a config that failed to load, with the messages the CLI
 * prints at start: the dotted key and its line in the file (a TOML syntax error's
 * line and the key written there; a Mulch mapping's "key (line N)").
 */
export function locateConfigProblems (err: unknown): LocatedProblem[] {
  if (!(err instanceof FileInvalidError)) {
    const message = err instanceof Error ? err.message : String(err)
    return [{ file: err instanceof ProxyError ? message.replace(/: .*$/s, '') : '', key: '', message }]
  }
  let text = ''
  try { text = readFileSync(err.file, 'utf8') } catch { /* embedded default, or gone since: keys without lines */ }
  const lines = tomlKeyLines(text)
  return err.problems.map((p): LocatedProblem => {
    const syntax = /^line (\d+), column \d+$/.exec(p.path)
    if (syntax !== null) return { file: err.file, line: Number(syntax[1]), key: tomlKeyAtLine(text, Number(syntax[1])), message: p.message }
    const mulch = /^(.*) \(line (\d+)\)(.*)$/.exec(p.path)
    if (mulch !== null) return { file: err.file, line: Number(mulch[2]), key: mulch[1] + mulch[3], message: p.message }
    const line = lineOfKey(lines, p.path)
    return { file: err.file, ...(line === undefined ? {} : { line }), key: p.path, message: p.message }
  })
}

/** A new listener bound beside the old one: `commit` puts it in service and retires the old, `abort` closes it. */
export interface Rebound {
  readonly port: number | undefined
  commit (): void
  abort (): void
}

export interface ConfigReloaderOptions {
  /** The config the process started with. */
  readonly started: ProxyConfig
  /** Reads and checks the TOML again, from the same source(s) as at start; throws like at start. */
  readonly load: () => ProxyConfig
  readonly live: LiveHolder
  /** Where the access log writes (a new one is built when log.access is turned on). */
  readonly sink: LineSink
  readonly logger: Logger
  readonly metrics: ProxyMetrics
  /**
   * Binds listener `name` at `address` (undefined: the listener is turned off) beside
   * the running one; throws when it cannot be bound (the old one keeps serving).
   */
  readonly rebind: (name: ListenerName, address: ListenAddress | undefined) => Promise<Rebound>
  /** The HTTP(S) listeners in service (their timeouts and limits are updated). */
  readonly listeners: () => readonly ManagedListener[]
  /** Called after rate profiles changed (routes re-resolve their profile names). */
  readonly onRateProfilesChanged?: () => void
  /** Called when `[server] workers` changed. */
  readonly onWorkersChanged?: (workers: number) => void
  /** Told when a SIGHUP changed chain.psk, chain.ping_interval or chain.ping_timeout. */
  readonly onChainSettingsChanged?: (chain: ProxyConfig['chain']) => void
  /** What a worker builds its own way (its limiter asks the primary). */
  readonly parts?: LiveParts
}

export interface ConfigReloadResult {
  readonly result: 'success' | 'failure'
  readonly diff?: ConfigDiff
  readonly problems?: readonly LocatedProblem[]
}

/** Reloads the TOML; calls are serialised (a SIGHUP burst applies each in turn). */
export interface ConfigReloader {
  reload (): Promise<ConfigReloadResult>
}

const LISTENER_KEYS: ReadonlyArray<[ListenerName, string]> = [['http', 'listen.http'], ['https', 'listen.https'], ['admin', 'listen.admin']]

/** Closes parts that were built for settings never put in service, or retired from it. */
function closeParts (parts: RetiredParts, afterMs: number): void {
  parts.limiter?.close()
  if (parts.forwarder === undefined && parts.websockets === undefined) return
  // Requests started on them finish on them: closed once the drain time is over.
  setTimeout(() => {
    parts.websockets?.close()
    void parts.forwarder?.close().catch(() => {})
  }, afterMs).unref()
}

/** The parts of `built` that `kept` does not use. */
function unused (built: LiveSettings, kept: LiveSettings): RetiredParts {
  return {
    limiter: built.limiter === kept.limiter ? undefined : built.limiter,
    forwarder: built.forwarder === kept.forwarder ? undefined : built.forwarder,
    websockets: built.websockets === kept.websockets ? undefined : built.websockets
  }
}

export function createConfigReloader (options: ConfigReloaderOptions): ConfigReloader {
  const { logger, metrics } = options
  let tail: Promise<unknown> = Promise.resolve()

  function failed (problems: LocatedProblem[], why: string): ConfigReloadResult {
    for (const p of problems) logger.error('config reload failed: keeping the running configuration', { file: p.file, line: p.line, key: p.key, problem: p.message })
    logger.error('config reload failed: keeping the running configuration', { file: options.started.file, reason: why, problems: problems.length })
    metrics.configReloads.inc({ result: 'failure' })
    metrics.configReloadSuccessful.set(0)
    return { result: 'failure', problems }
  }

  async function once (): Promise<ConfigReloadResult> {
    let next: ProxyConfig
    try {
      next = options.load()
    } catch (err) {
      if (!(err instanceof ProxyError)) throw err
      return failed(locateConfigProblems(err), 'invalid configuration')
    }
    const current = options.live.settings
    const diff = diffConfig(options.started, current.config, next)
    let built: LiveSettings
    let retired: RetiredParts
    try {
      ({ settings: built, retired } = buildLiveSettings(next, options.sink, current, options.parts))
    } catch (err) {
      // An error template that cannot be read: its message names the key.
      return failed([{ file: next.file, key: 'error_pages.template', message: err instanceof Error ? err.message : String(err) }], 'invalid configuration')
    }

    // New addresses first: if one cannot be bound, nothing changes.
    const rebound: Array<{ name: ListenerName, rebound: Rebound }> = []
    for (const [name, key] of LISTENER_KEYS) {
      if (!diff.live.includes(key)) continue
      try {
        rebound.push({ name, rebound: await options.rebind(name, next.listen[name]) })
      } catch (err) {
        for (const r of rebound) r.rebound.abort()
        closeParts(unused(built, current), 0)
        const e = err as NodeJS.ErrnoException
        const address = next.listen[name]
        return failed([{ file: next.file, key, message: `cannot listen on ${address?.host ?? ''}:${address?.port ?? ''}: ${e.code ?? e.message} (the previous listener keeps serving)` }], 'listener not bound')
      }
    }

    options.live.settings = built
    for (const l of options.listeners()) l.configure(built.listenerOptions)
    for (const r of rebound) r.rebound.commit()
    closeParts(retired, next.timeouts.drainMs)
    if (diff.live.includes('rate_profile')) options.onRateProfilesChanged?.()
    if (diff.live.includes('server.workers')) options.onWorkersChanged?.(next.server.workers)
    if (diff.live.some((key) => key === 'chain.psk' || key === 'chain.ping_interval' || key === 'chain.ping_timeout')) options.onChainSettingsChanged?.(next.chain)

    for (const key of diff.restart) logger.warn('config change needs a restart (vmfront proxy --takeover): the running value is kept', { file: next.file, key })
    for (const warning of next.warnings) logger.warn('config warning', { file: next.file, warning })
    metrics.configReloads.inc({ result: 'success' })
    metrics.configReloadSuccessful.set(1)
    metrics.lastReloadSuccessTimestamp.set(Date.now() / 1000)
    const listeners = Object.fromEntries(rebound.map((r) => [r.name, r.rebound.port ?? null]))
    logger.info(diff.live.length === 0 && diff.restart.length === 0 ? 'config unchanged' : 'config reloaded', { file: next.file, applied: diff.live, needs_restart: diff.restart, ...(rebound.length > 0 ? { listeners } : {}) })
    return { result: 'success', diff }
  }

  return {
    reload (): Promise<ConfigReloadResult> {
      const run = tail.then(once, once)
      tail = run.catch(() => {})
      return run
    }
  }
}

/**
 * Retires a listener moved to a new address: it stops accepting at once, its open
 * connections are served until they end or `drainMs` (timeouts.drain) is over, then
 * the rest are closed. A client still on one then reconnects to the old address:
 * moving a listener is only seamless for clients that move within the drain time.
 */
export async function retireListener (listener: ManagedListener, drainMs: number): Promise<void> {
  listener.stopListening()
  const deadline = Date.now() + drainMs
  while (listener.openSockets() > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100))
  listener.closeIdle()
  listener.destroyAll()
  listener.stopAccepting()
}
