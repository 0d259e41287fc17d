/**
 * @module proxy/config
 * The proxy's static configuration (SPEC §3): TOML parsed, checked once, defaults
 * applied, frozen. Every problem names the file and the dotted key.
 */
import { unknownKeyMessage } from './suggest.ts'
import { readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { availableParallelism, hostname, tmpdir } from 'node:os'
import { fileURLToPath } from 'node:url'
import { parse as parseToml } from 'smol-toml'
import { checkTable, type ListenAddress, type TableSpec } from './config-schema.ts'
import { FileInvalidError, ProxyError, type Problem } from './errors.ts'
import { LOG_LEVELS, type LogLevel } from './log.ts'
import { parseRateProfiles, type RateProfile } from './rate-profile.ts'

/** The checked, frozen configuration of one proxy process. */
export interface ProxyConfig {
  readonly file: string
  readonly dataDir: string
  readonly routesFile: string
  readonly pidFile: string
  /** Mulch's TCP port file (SPEC §11); "" = none. */
  readonly portsFile: string
  /** Starts a tiny built-in backend here (the embedded default's example VM). */
  readonly exampleBackend: ListenAddress | undefined
  readonly listen: { readonly http?: ListenAddress, readonly https?: ListenAddress, readonly admin?: ListenAddress }
  readonly acme: {
    readonly enabled: boolean
    readonly directoryUrl: string
    readonly email: string
    readonly caFile: string
    readonly profile: string
    /** Names a certificate may be ordered for although no route names them (mulchd's listen_https_domain). */
    readonly extraDomains: readonly string[]
  }
  readonly tls: { readonly extraCertsFile: string }
  readonly chain: {
    readonly mode: 'none' | 'parent' | 'child'
    readonly parentUrl: string
    readonly childUrl: string
    readonly name: string
    readonly psk: string
    readonly leaseTtlMs: number
    readonly pingIntervalMs: number
    readonly pingTimeoutMs: number
    readonly maxConcurrentStreams: number
    readonly idleTimeoutMs: number
    readonly connectTimeoutMs: number
    /** Parent: most children registered at once; a new one past it gets 503. */
    readonly maxChildren: number
    /**
     * Child: the parent's chain protocol: vmfront's own API, mulch-proxy's
     * (`POST /domains` with Mulch-PSK), or "auto" (vmfront's, then Mulch's on a 404).
     */
    readonly parentProtocol: 'auto' | 'vmfront' | 'mulch'
  }
  readonly headers: { readonly trustedProxies: readonly string[] }
  readonly timeouts: {
    readonly connectMs: number
    readonly upstreamResponseMs: number
    readonly upstreamIdleMs: number
    readonly requestHeadersMs: number
    readonly clientIdleMs: number
    readonly websocketIdleMs: number
    /** A forwarded TCP connection with no traffic either way for this long ends (0 = never). */
    readonly tcpIdleMs: number
    readonly drainMs: number
  }
  readonly upstream: { readonly keepAliveMs: number, readonly maxConnectionsPerTarget: number }
  readonly limits: { readonly maxHeaderBytes: number, readonly maxRequestsPerConnection: number }
  /** `[server] workers` as written (0 = one per CPU; see workerCount). */
  readonly server: { readonly workers: number }
  /** `file`: '' writes to stdout; else an absolute path, reopened on SIGUSR1. */
  readonly log: { readonly level: LogLevel, readonly access: boolean, readonly file: string }
  readonly errorPages: { readonly template: string }
  /** The `[[rate_profile]]` tables, checked; always has "default". */
  readonly rateProfiles: readonly RateProfile[]
  /** Non-fatal findings (logged at start). */
  readonly warnings: readonly string[]
}

const TOP: TableSpec = {
  data_dir: { kind: { type: 'string' }, default: '/var/lib/vmfront' },
  routes_file: { kind: { type: 'string' }, default: '/var/lib/vmfront/routes.json' },
  pid_file: { kind: { type: 'string' }, default: '/var/lib/vmfront/proxy.pid' },
  example_backend: { kind: { type: 'address' }, default: '' },
  ports_file: { kind: { type: 'string' }, default: '' }
}
const LISTEN: TableSpec = {
  http: { kind: { type: 'address' }, default: '0.0.0.0:80' },
  https: { kind: { type: 'address' }, default: '0.0.0.0:443' },
  admin: { kind: { type: 'address' }, default: '127.0.0.1:9180' }
}
const ACME: TableSpec = {
  enabled: { kind: { type: 'bool' }, default: false },
  directory_url: { kind: { type: 'string' }, default: 'letsencrypt-staging' },
  email: { kind: { type: 'string' }, default: '' },
  ca_file: { kind: { type: 'string' }, default: '' },
  profile: { kind: { type: 'string' }, default: '' },
  extra_domains: { kind: { type: 'hostname-list' }, default: [] }
}
const TLS: TableSpec = {
  extra_certs_file: { kind: { type: 'string' }, default: '' }
}
const CHAIN: TableSpec = {
  mode: { kind: { type: 'enum', values: ['none', 'parent', 'child'] }, default: 'none' },
  parent_url: { kind: { type: 'url', protocols: ['http:', 'https:'], allowEmpty: true }, default: '' },
  child_url: { kind: { type: 'url', protocols: ['http:', 'https:'], allowEmpty: true }, default: '' },
  name: { kind: { type: 'string' }, default: '' },
  psk: { kind: { type: 'string' }, default: '' },
  lease_ttl: { kind: { type: 'duration', min: 1000 }, default: '60s' },
  ping_interval: { kind: { type: 'duration', min: 100 }, default: '10s' },
  ping_timeout: { kind: { type: 'duration', min: 100 }, default: '5s' },
  max_concurrent_streams: { kind: { type: 'int', min: 1, max: 10000 }, default: 250 },
  idle_timeout: { kind: { type: 'duration' }, default: '5m' },
  connect_timeout: { kind: { type: 'duration', min: 100 }, default: '5s' },
  max_children: { kind: { type: 'int', min: 1, max: 100000 }, default: 1000 },
  parent_protocol: { kind: { type: 'enum', values: ['auto', 'vmfront', 'mulch'] }, default: 'auto' }
}
const HEADERS: TableSpec = {
  trusted_proxies: { kind: { type: 'ip-list' }, default: [] }
}
const TIMEOUTS: TableSpec = {
  connect: { kind: { type: 'duration', min: 1 }, default: '5s' },
  upstream_response: { kind: { type: 'duration', min: 1 }, default: '60s' },
  upstream_idle: { kind: { type: 'duration' }, default: '5m' },
  request_headers: { kind: { type: 'duration', min: 100 }, default: '10s' },
  client_idle: { kind: { type: 'duration', min: 100 }, default: '60s' },
  websocket_idle: { kind: { type: 'duration' }, default: '1h' },
  tcp_idle: { kind: { type: 'duration' }, default: '1h' },
  drain: { kind: { type: 'duration' }, default: '30s' }
}
const UPSTREAM: TableSpec = {
  keepalive: { kind: { type: 'duration', min: 100 }, default: '4s' },
  max_connections_per_target: { kind: { type: 'int', min: 1, max: 100000 }, default: 256 }
}
const LIMITS: TableSpec = {
  max_header_bytes: { kind: { type: 'int', min: 1024, max: 1048576 }, default: 16384 },
  max_requests_per_connection: { kind: { type: 'int', min: 0, max: 10000000 }, default: 0 }
}
/** SPEC §12's process model: request-serving worker processes (0 = one per CPU). */
const SERVER: TableSpec = {
  workers: { kind: { type: 'int', min: 0, max: 1024 }, default: 0 }
}
const LOG: TableSpec = {
  level: { kind: { type: 'enum', values: LOG_LEVELS }, default: 'info' },
  access: { kind: { type: 'bool' }, default: true },
  file: { kind: { type: 'string' }, default: '' }
}
const ERROR_PAGES: TableSpec = {
  template: { kind: { type: 'string' }, default: '' }
}
const SECTIONS: Record<string, TableSpec> = {
  listen: LISTEN, acme: ACME, tls: TLS, chain: CHAIN, headers: HEADERS, timeouts: TIMEOUTS, upstream: UPSTREAM, limits: LIMITS, log: LOG, error_pages: ERROR_PAGES, server: SERVER
}

/** Whether a top-level key exists in the config (the Mulch mapping sets `ports_file` only once it does). */
export function isTopLevelConfigKey (key: string): boolean {
  return Object.hasOwn(TOP, key)
}
/** Every key of the TOML (besides `[[rate_profile]]`): proxy/config-json-schema.ts builds the editors' schema from it. */
export const CONFIG_SPEC: { readonly top: TableSpec, readonly sections: Readonly<Record<string, TableSpec>> } = { top: TOP, sections: SECTIONS }

/** The folder of the checkout (for the embedded default's example files). */
export const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..')

/**
 * The embedded default of `vmfront proxy` without --config: unprivileged loopback
 * ports, the example route file, a built-in example backend, data in a temp folder.
 */
export function embeddedDefaultToml (): string {
  const dataDir = resolve(tmpdir(), `vmfront-demo-${process.getuid?.() ?? 'user'}`)
  return [
    `data_dir = ${JSON.stringify(dataDir)}`,
    `routes_file = ${JSON.stringify(resolve(PACKAGE_ROOT, 'examples/routes.json'))}`,
    `pid_file = ${JSON.stringify(resolve(dataDir, 'proxy.pid'))}`,
    'example_backend = "127.0.0.1:8081"',
    '[listen]',
    'http = "127.0.0.1:8080"',
    'https = "127.0.0.1:8443"',
    'admin = "127.0.0.1:9180"',
    '[server]',
    'workers = 1',
    ''
  ].join('\n')
}

/** Checks a parsed TOML document. `file` only names the source in errors. */
export function checkConfig (doc: Record<string, unknown>, file: string): ProxyConfig {
  const problems: Problem[] = []
  const known = new Set([...Object.keys(TOP), ...Object.keys(SECTIONS), 'rate_profile'])
  for (const key of Object.keys(doc)) {
    if (!known.has(key)) problems.push({ path: key, message: unknownKeyMessage(key, known) })
  }
  const top = checkTable(Object.fromEntries(Object.entries(doc).filter(([k]) => k in TOP)), TOP, '', problems)
  const s: Record<string, Record<string, unknown>> = {}
  for (const [name, spec] of Object.entries(SECTIONS)) s[name] = checkTable(doc[name], spec, name, problems)

  let rateProfiles: readonly RateProfile[] = []
  const warnings: string[] = []
  const profiles = parseRateProfiles(doc.rate_profile)
  for (const w of profiles.warnings) warnings.push(`${w.path}: ${w.message}`)
  if (profiles.ok) rateProfiles = profiles.profiles
  else problems.push(...profiles.problems)

  // Rules between keys look only at keys that are valid: an invalid key is
  // reported once, by itself, never again as the cause of bogus follow-ups
  // (a typo in chain.mode is not also "psk too short when mode is undefined").
  // checkTable leaves an invalid key out of its result; a disabled listener ("") is in it.
  const chain = s.chain
  const mode = 'mode' in chain ? chain.mode as string : undefined
  if (mode !== undefined && mode !== 'none') {
    if (typeof chain.psk === 'string' && chain.psk.length < 16) problems.push({ path: 'chain.psk', message: `must be at least 16 characters when chain.mode is "${mode}"` })
    if (chain.parent_url === '') problems.push({ path: 'chain.parent_url', message: `is required when chain.mode is "${mode}"` })
  }
  if (mode === 'child' && chain.child_url === '') problems.push({ path: 'chain.child_url', message: 'is required when chain.mode is "child"' })
  const disabled = (key: 'http' | 'https'): boolean => key in s.listen && s.listen[key] === undefined
  if (s.acme.enabled === true && disabled('http')) problems.push({ path: 'listen.http', message: 'must be set when acme.enabled is true (HTTP-01 challenges are answered there)' })
  if (s.acme.enabled === true && disabled('https')) problems.push({ path: 'listen.https', message: 'must be set when acme.enabled is true' })

  if (problems.length > 0) throw new FileInvalidError('CONFIG_INVALID', file, problems)
  const base = dirname(resolve(file === '<embedded default>' ? PACKAGE_ROOT + '/x' : file))
  const path = (p: unknown): string => (p === '' ? '' : resolve(base, p as string))
  const hostName = (): string => process.env.HOSTNAME ?? hostname()

  const config: ProxyConfig = {
    file,
    dataDir: path(top.data_dir),
    routesFile: path(top.routes_file),
    pidFile: path(top.pid_file),
    portsFile: path(top.ports_file),
    exampleBackend: top.example_backend as ListenAddress | undefined,
    listen: s.listen as ProxyConfig['listen'],
    acme: { enabled: s.acme.enabled as boolean, directoryUrl: s.acme.directory_url as string, email: s.acme.email as string, caFile: path(s.acme.ca_file), profile: s.acme.profile as string, extraDomains: s.acme.extra_domains as string[] },
    tls: { extraCertsFile: path(s.tls.extra_certs_file) },
    chain: {
      mode: chain.mode as ProxyConfig['chain']['mode'],
      parentUrl: chain.parent_url as string,
      childUrl: chain.child_url as string,
      name: chain.name === '' ? hostName() : chain.name as string,
      psk: chain.psk as string,
      leaseTtlMs: chain.lease_ttl as number,
      pingIntervalMs: chain.ping_interval as number,
      pingTimeoutMs: chain.ping_timeout as number,
      maxConcurrentStreams: chain.max_concurrent_streams as number,
      idleTimeoutMs: chain.idle_timeout as number,
      connectTimeoutMs: chain.connect_timeout as number,
      maxChildren: chain.max_children as number,
      parentProtocol: chain.parent_protocol as ProxyConfig['chain']['parentProtocol']
    },
    headers: { trustedProxies: s.headers.trusted_proxies as string[] },
    timeouts: {
      connectMs: s.timeouts.connect as number,
      upstreamResponseMs: s.timeouts.upstream_response as number,
      upstreamIdleMs: s.timeouts.upstream_idle as number,
      requestHeadersMs: s.timeouts.request_headers as number,
      clientIdleMs: s.timeouts.client_idle as number,
      websocketIdleMs: s.timeouts.websocket_idle as number,
      tcpIdleMs: s.timeouts.tcp_idle as number,
      drainMs: s.timeouts.drain as number
    },
    upstream: { keepAliveMs: s.upstream.keepalive as number, maxConnectionsPerTarget: s.upstream.max_connections_per_target as number },
    limits: { maxHeaderBytes: s.limits.max_header_bytes as number, maxRequestsPerConnection: s.limits.max_requests_per_connection as number },
    server: { workers: s.server.workers as number },
    log: { level: s.log.level as LogLevel, access: s.log.access as boolean, file: path(s.log.file) },
    errorPages: { template: path(s.error_pages.template) },
    rateProfiles,
    warnings
  }
  return deepFreeze(config)
}

/**
 * Parses a TOML document (vmfront's or Mulch's).
 * @throws FileInvalidError (CONFIG_INVALID) naming the file, line and column of a syntax error
 */
export function parseTomlDocument (text: string, file: string): Record<string, unknown> {
  try {
    return parseToml(text) as Record<string, unknown>
  } catch (err) {
    const e = err as Error & { line?: number, column?: number }
    const where = e.line !== undefined ? `line ${e.line}, column ${e.column ?? 0}` : '(syntax)'
    throw new FileInvalidError('CONFIG_INVALID', file, [{ path: where, message: `invalid TOML: ${e.message.split('\n')[0]}` }])
  }
}

/** Parses TOML text; syntax errors name the file, line and column. */
export function parseConfigText (text: string, file: string): ProxyConfig {
  return checkConfig(parseTomlDocument(text, file), file)
}

/** Reads and checks a config file, or the embedded default when `file` is undefined. */
export function loadConfig (file: string | undefined): ProxyConfig {
  if (file === undefined) return parseConfigText(embeddedDefaultToml(), '<embedded default>')
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new ProxyError('CONFIG_UNREADABLE', `${file}: cannot read the config file: ${(err as Error).message}`, { cause: err })
  }
  return parseConfigText(text, file)
}

function deepFreeze<T> (value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const v of Object.values(value)) deepFreeze(v)
  }
  return value
}

/**
 * How many processes serve requests: `[server] workers`, 0 meaning one per CPU
 * the process may use (a chain parent or child too: proxy/chain/shared.ts).
 */
export function workerCount (config: ProxyConfig, cpus: number = availableParallelism()): number {
  return config.server.workers === 0 ? Math.max(1, cpus) : config.server.workers
}
