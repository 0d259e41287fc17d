/**
 * @module proxy/mulch-config
 * `--mulch-config DIR_OR_FILE` (SPEC §10): Mulch's `mulchd.toml` read the way
 * mulch-proxy reads it (cmd/mulch-proxy/app_config.go), mapped key by key onto
 * vmfront's configuration, with mulch-proxy's defaults and file locations.
 *
 * `mulchConfigToProxyConfig` is the mapping itself: a pure function from the file's
 * text to a vmfront configuration document (the TOML shape `checkConfig` reads) and
 * where each of its values came from, so `vmfront proxy` and `vmfront check` share
 * it. `loadMulchConfig` does the I/O around it: finds the file, looks for the files
 * mulch-proxy reads beside it, merges an optional vmfront `--config` (vmfront-only
 * settings; a setting given by both files is an error) and checks the result.
 */
import { readFileSync, statSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { checkConfig, isTopLevelConfigKey, parseTomlDocument, type ProxyConfig } from './config.ts'
import { FileInvalidError, ProxyError, type Problem } from './errors.ts'
import { hostnameProblem } from './route-table.ts'
import { describeError } from '../certs/index.ts'
import { lineOfKey, tomlKeyLines } from './toml-positions.ts'
import type { ConfigSources } from './check.ts'

/** The files of a Mulch installation, as mulch-proxy names them. */
export const MULCH_FILES = Object.freeze({
  /** In the config folder (`mulch-proxy -path DIR`). */
  config: 'mulchd.toml',
  extraCerts: 'extra_certs.toml',
  errorTemplate: 'templates/error_page.html',
  /** Under `data_path`. */
  domains: 'mulch-proxy-domains.db',
  ports: 'mulch-proxy-ports-v2.db',
  pid: 'mulch-proxy-last.pid'
})

/** The value `proxy_acme_url` takes for Let's Encrypt's production directory. */
export const LE_PRODUCTION = 'LETS_ENCRYPT_PRODUCTION'

/** mulch-proxy's defaults for the keys it reads (NewAppConfigFromTomlFile). */
export const MULCH_DEFAULTS = Object.freeze({
  data_path: './var/data',
  proxy_acme_url: 'https://acme-staging-v02.api.letsencrypt.org/directory',
  proxy_listen_http: ':80',
  proxy_listen_https: ':443'
})

/** `proxy_*` keys that are mulchd's own: mulch-proxy skips them. */
const MULCHD_PROXY_KEYS = new Set(['proxy_listen_ssh', 'proxy_ssh_extra_keys_file'])
const STRING_KEYS = ['data_path', 'listen_https_domain', 'proxy_acme_url', 'proxy_acme_email', 'proxy_listen_http', 'proxy_listen_https',
  'proxy_chain_mode', 'proxy_chain_parent_url', 'proxy_chain_child_url', 'proxy_chain_psk'] as const
/** Every `proxy_*` key mulch-proxy reads. */
const PROXY_KEYS = new Set<string>([...STRING_KEYS.filter((k) => k.startsWith('proxy_')), 'proxy_force_x_forwarded_for', 'proxy_trusted_proxies', 'proxy_rate'])
const RATE_KEYS = new Set(['name', 'concurrent_max_requests', 'concurrent_overflow_timeout_seconds', 'limit_burst_requests', 'limit_requests_per_second', 'limit_max_delay_seconds', 'vip_list'])
/** mulch-proxy's ChainPSKMinLength. */
const PSK_MIN = 16

/** What the mapping reads: the file's text and where it is. */
export interface MulchConfigSource {
  /** The mulchd.toml path (named in messages; its folder holds extra_certs.toml and templates/). */
  readonly file: string
  readonly text: string
  /** The working directory a relative `data_path` is resolved against (mulch-proxy's behaviour). */
  readonly cwd: string
  /** Whether the optional files mulch-proxy reads from the config folder exist. */
  readonly present: { readonly extraCerts: boolean, readonly errorTemplate: boolean }
}

/** Which Mulch key gave a vmfront setting. */
export interface MulchOrigin {
  readonly mulchKey: string
  /** 1-based line in the mulch file; undefined for a default or a file location. */
  readonly line: number | undefined
}

/** The mapping's result: vmfront configuration documents (the TOML shape `checkConfig` reads). */
export interface MulchMapping {
  /** Settings the Mulch installation fixes: its keys, present in the file, and its file layout. */
  readonly given: Record<string, unknown>
  /** mulch-proxy's defaults for keys the file is silent about: a vmfront `--config` may set these. */
  readonly defaults: Record<string, unknown>
  /** Dotted vmfront key (`listen.http`, `rate_profile`) → the Mulch key that gave it. */
  readonly origins: ReadonlyMap<string, MulchOrigin>
  readonly warnings: readonly string[]
}

function describe (value: unknown): string {
  if (Array.isArray(value)) return 'an array'
  if (value instanceof Date) return 'a date'
  if (typeof value === 'object' && value !== null) return 'a table'
  return `${typeof value} ${JSON.stringify(typeof value === 'bigint' ? String(value) : value)}`
}

function isTable (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date)
}

/** Seconds (mulch's `*_seconds` floats) as a vmfront duration string. */
function secondsToDuration (seconds: number): string {
  return `${Math.round(seconds * 1000)}ms`
}

/**
 * Maps a mulchd.toml onto vmfront's configuration, checking it as mulch-proxy does
 * (unknown `proxy_*` keys, chain settings, `[[proxy_rate]]`). Pure: no file is read.
 * @throws FileInvalidError (CONFIG_INVALID) naming the file, and each problem's key and line
 */
export function mulchConfigToProxyConfig (source: MulchConfigSource): MulchMapping {
  const { file, text } = source
  const doc = parseTomlDocument(text, file)
  const problems: Problem[] = []
  const warnings: string[] = []
  const origins = new Map<string, MulchOrigin>()
  const given: Record<string, unknown> = {}
  const defaults: Record<string, unknown> = {}
  const lines = tomlKeyLines(text)
  const lineOf = (key: string): number | undefined => lineOfKey(lines, key)
  const at = (key: string, line = lineOf(key)): string => (line === undefined ? key : `${key} (line ${line})`)
  const problem = (key: string, message: string, line?: number): void => { problems.push({ path: at(key, line ?? lineOf(key)), message }) }

  // Unknown proxy_* keys are an error, as in mulch-proxy; every other key is mulchd's.
  for (const key of Object.keys(doc)) {
    if (key.startsWith('proxy_') && !PROXY_KEYS.has(key) && !MULCHD_PROXY_KEYS.has(key)) {
      problem(key, `is not a setting mulch-proxy knows (it refuses it too; known: ${[...PROXY_KEYS].join(', ')})`)
    }
  }
  const str = (key: typeof STRING_KEYS[number]): string | undefined => {
    const value = doc[key]
    if (value === undefined) return undefined
    if (typeof value !== 'string') {
      problem(key, `must be a string, not ${describe(value)}`)
      return undefined
    }
    return value
  }
  /** Sets a vmfront key the mulch file gives (`section` '' = top level). */
  const give = (section: string, key: string, value: unknown, mulchKey: string, line: number | undefined = lineOf(mulchKey)): void => {
    const target = section === '' ? given : ((given[section] ??= {}) as Record<string, unknown>)
    target[key] = value
    origins.set(section === '' ? key : `${section}.${key}`, { mulchKey, line })
  }
  const fallback = (section: string, key: string, value: unknown): void => {
    const target = section === '' ? defaults : ((defaults[section] ??= {}) as Record<string, unknown>)
    target[key] = value
  }

  // Files: mulch-proxy's fixed layout under data_path and beside mulchd.toml.
  const dataPathText = str('data_path')
  const dataPath = resolve(source.cwd, dataPathText ?? MULCH_DEFAULTS.data_path)
  const dataLine = lineOf('data_path')
  give('', 'data_dir', dataPath, 'data_path', dataLine)
  give('', 'routes_file', join(dataPath, MULCH_FILES.domains), 'data_path', dataLine)
  give('', 'pid_file', join(dataPath, MULCH_FILES.pid), 'data_path', dataLine)
  // SPEC §11's ports_file comes with TCP forwarding, merged separately: mapped as soon as the config knows the key.
  if (isTopLevelConfigKey('ports_file')) give('', 'ports_file', join(dataPath, MULCH_FILES.ports), 'data_path', dataLine)
  const folder = dirname(resolve(source.cwd, file))
  if (source.present.extraCerts) give('tls', 'extra_certs_file', join(folder, MULCH_FILES.extraCerts), MULCH_FILES.extraCerts, undefined)
  if (source.present.errorTemplate) give('error_pages', 'template', join(folder, MULCH_FILES.errorTemplate), MULCH_FILES.errorTemplate, undefined)

  // ACME: mulch-proxy always runs it (autocert); "" means the acme package's default, production.
  fallback('acme', 'enabled', true)
  const acmeUrl = str('proxy_acme_url')
  if (acmeUrl === undefined) fallback('acme', 'directory_url', 'letsencrypt-staging')
  else give('acme', 'directory_url', acmeUrl === LE_PRODUCTION || acmeUrl === '' ? 'letsencrypt' : acmeUrl, 'proxy_acme_url')
  const email = str('proxy_acme_email')
  // mulch's default, root@localhost.localdomain, is refused by Let's Encrypt: no contact instead.
  if (email !== undefined) give('acme', 'email', email, 'proxy_acme_email')
  const httpsDomain = str('listen_https_domain')
  if (httpsDomain !== undefined && httpsDomain !== '') {
    const bad = hostnameProblem(httpsDomain)
    if (bad !== undefined) problem('listen_https_domain', `${bad}: a certificate is ordered for it`)
    else give('acme', 'extra_domains', [httpsDomain], 'listen_https_domain')
  }

  // Listeners: Go's http.Server listens on ":http" / ":https" for an empty address.
  for (const [mulchKey, key, goDefault] of [['proxy_listen_http', 'http', ':80'], ['proxy_listen_https', 'https', ':443']] as const) {
    const value = str(mulchKey)
    if (value === undefined) fallback('listen', key, MULCH_DEFAULTS[mulchKey])
    else give('listen', key, value === '' ? goDefault : value, mulchKey)
  }

  // Chaining.
  const modeText = str('proxy_chain_mode')
  const mode = modeText === undefined || modeText === '' ? 'none' : modeText
  if (mode !== 'none' && mode !== 'child' && mode !== 'parent') {
    problem('proxy_chain_mode', `must be "", "child" or "parent", not ${JSON.stringify(modeText)}`)
  } else {
    if (modeText !== undefined) give('chain', 'mode', mode, 'proxy_chain_mode')
    const parentUrl = str('proxy_chain_parent_url') ?? ''
    const childUrl = str('proxy_chain_child_url') ?? ''
    const psk = str('proxy_chain_psk') ?? ''
    const url = (key: string, value: string): void => {
      let ok = false
      try { ok = ['http:', 'https:'].includes(new URL(value).protocol) } catch { /* reported below */ }
      if (!ok) problem(key, `${JSON.stringify(value)} is not an http:// or https:// URL`)
    }
    if (mode !== 'none') {
      if (parentUrl === '') problem('proxy_chain_parent_url', 'is required for proxy chaining (proxy_chain_mode is set)')
      else url('proxy_chain_parent_url', parentUrl)
      if (psk === '') problem('proxy_chain_psk', 'is required for proxy chaining (proxy_chain_mode is set)')
      else if (psk.length < PSK_MIN) problem('proxy_chain_psk', `is too short (at least ${PSK_MIN} characters)`)
      give('chain', 'parent_url', parentUrl, 'proxy_chain_parent_url')
      give('chain', 'psk', psk, 'proxy_chain_psk')
    } else {
      for (const key of ['proxy_chain_parent_url', 'proxy_chain_child_url', 'proxy_chain_psk'] as const) {
        if (doc[key] !== undefined && doc[key] !== '') warnings.push(`${at(key)}: ignored, as by mulch-proxy: proxy_chain_mode is empty`)
      }
    }
    if (mode === 'child') {
      if (childUrl === '') problem('proxy_chain_child_url', 'is required for proxy chain children')
      else url('proxy_chain_child_url', childUrl)
      give('chain', 'child_url', childUrl, 'proxy_chain_child_url')
    }
    if (mode === 'parent' && childUrl !== '') problem('proxy_chain_child_url', 'is reserved for proxy chain children (proxy_chain_mode is "parent")')
  }

  // Forwarded headers.
  const force = doc.proxy_force_x_forwarded_for
  if (force !== undefined && typeof force !== 'boolean') problem('proxy_force_x_forwarded_for', `must be true or false, not ${describe(force)}`)
  // vmfront always acts as `true` for untrusted clients (their X-Forwarded-For is replaced): nothing to map.
  const trusted = doc.proxy_trusted_proxies
  if (trusted !== undefined) {
    if (!Array.isArray(trusted) || trusted.some((ip) => typeof ip !== 'string')) {
      problem('proxy_trusted_proxies', `must be an array of IP address strings, not ${describe(trusted)}`)
    } else {
      const dup = trusted.find((ip, i) => trusted.indexOf(ip) !== i)
      if (dup !== undefined) problem('proxy_trusted_proxies', `lists ${JSON.stringify(dup)} twice (mulch-proxy refuses duplicates)`)
      else if (mode !== 'none' && trusted.length > 0) warnings.push(`${at('proxy_trusted_proxies')}: ignored, as by mulch-proxy: proxy chaining is on`)
      else give('headers', 'trusted_proxies', [...trusted as string[]], 'proxy_trusted_proxies')
    }
  }

  // Rate profiles.
  const rates = doc.proxy_rate
  if (rates !== undefined) {
    if (!Array.isArray(rates) || !rates.every(isTable)) problem('proxy_rate', `must be [[proxy_rate]] tables, not ${describe(rates)}`)
    else {
      const profiles = rates.map((rate, i) => mapRate(rate, i, lines, problems))
      const names = rates.map((r) => (typeof r.name === 'string' && r.name !== '' ? r.name : undefined))
      names.forEach((name, i) => {
        if (name !== undefined && names.indexOf(name) !== i) problems.push({ path: rateAt(lines, i, 'name'), message: `duplicate proxy_rate name ${JSON.stringify(name)}` })
      })
      give('', 'rate_profile', profiles, 'proxy_rate')
    }
  }

  if (problems.length > 0) throw new FileInvalidError('CONFIG_INVALID', file, problems)
  return { given, defaults, origins, warnings }
}

/** `proxy_rate[i].key (line N)`: the key's line, else its table's header line. */
function rateAt (lines: ReadonlyMap<string, number>, index: number, key?: string): string {
  const path = key === undefined ? `proxy_rate[${index}]` : `proxy_rate[${index}].${key}`
  const line = lineOfKey(lines, path)
  return line === undefined ? path : `${path} (line ${line})`
}

/** One `[[proxy_rate]]` as a `[[rate_profile]]`, checked as mulch-proxy checks it. */
function mapRate (rate: Record<string, unknown>, index: number, lines: ReadonlyMap<string, number>, problems: Problem[]): Record<string, unknown> | undefined {
  const before = problems.length
  const err = (key: string | undefined, message: string): void => { problems.push({ path: rateAt(lines, index, key), message }) }
  for (const key of Object.keys(rate)) {
    if (!RATE_KEYS.has(key)) err(key, `is not a proxy_rate setting mulch-proxy knows (known: ${[...RATE_KEYS].join(', ')})`)
  }
  const num = (key: string, integer: boolean): number => {
    const raw = rate[key]
    if (raw === undefined) return 0
    const value = typeof raw === 'bigint' ? Number(raw) : raw
    if (typeof value !== 'number' || !Number.isFinite(value) || (integer && !Number.isInteger(value))) {
      err(key, `must be ${integer ? 'a whole number' : 'a number'}, not ${describe(raw)}`)
      return 0
    }
    if (value < 0) err(key, `must be >= 0, not ${value}`)
    return value
  }
  const name = rate.name
  if (name === undefined || name === '') err(undefined, 'is missing the name')
  else if (typeof name !== 'string') err('name', `must be a string, not ${describe(name)}`)
  const concurrent = num('concurrent_max_requests', true)
  const overflow = num('concurrent_overflow_timeout_seconds', false)
  const burst = num('limit_burst_requests', true)
  const rps = num('limit_requests_per_second', false)
  const delay = num('limit_max_delay_seconds', false)
  // mulch-proxy's rule: any token-bucket key set means all three are required.
  if (burst > 0 || rps > 0 || delay > 0) {
    if (burst <= 0) err('limit_burst_requests', 'must be > 0 when the token bucket is on (limit_requests_per_second or limit_max_delay_seconds is set)')
    if (rps <= 1) err('limit_requests_per_second', `must be > 1 when the token bucket is on, not ${rps}`)
    if (delay <= 0) err('limit_max_delay_seconds', 'must be > 0 when the token bucket is on')
  }
  const vips = rate.vip_list
  let vipList: string[] = []
  if (vips !== undefined) {
    if (!Array.isArray(vips) || vips.some((ip) => typeof ip !== 'string')) err('vip_list', `must be an array of IP address strings, not ${describe(vips)}`)
    else {
      const dup = vips.find((ip, i) => vips.indexOf(ip) !== i)
      if (dup !== undefined) err('vip_list', `lists ${JSON.stringify(dup)} twice (mulch-proxy refuses duplicates)`)
      vipList = vips as string[]
    }
  }
  if (problems.length !== before) return undefined
  return {
    name,
    concurrent_max_requests: concurrent,
    concurrent_overflow_timeout: secondsToDuration(overflow),
    limit_burst_requests: burst,
    limit_requests_per_second: rps,
    limit_max_delay: secondsToDuration(delay),
    vip_list: vipList
  }
}

/** `DIR` means `DIR/mulchd.toml`, as `mulch-proxy -path DIR`. */
export function resolveMulchConfigFile (dirOrFile: string): string {
  let isDir = false
  try { isDir = statSync(dirOrFile).isDirectory() } catch { /* reported when read */ }
  return isDir ? join(dirOrFile, MULCH_FILES.config) : dirOrFile
}

function exists (file: string): boolean {
  try { return statSync(file).isFile() } catch { return false }
}

function readText (file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8')
  } catch (err) {
    throw new ProxyError('CONFIG_UNREADABLE', `${file}: cannot read the ${what}: ${describeError(err)}`, { cause: err })
  }
}

/** Whether a dotted key (`listen.http`, `rate_profile`) is set in a TOML document. */
function hasKey (doc: Record<string, unknown>, dotted: string): boolean {
  const [section, key] = dotted.includes('.') ? dotted.split('.', 2) : ['', dotted]
  if (section === '') return key in doc
  const table = doc[section]
  return isTable(table) && key in table
}

/** Tables merged one level deep, later documents winning. */
function mergeDocs (...docs: Array<Record<string, unknown>>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const doc of docs) {
    for (const [key, value] of Object.entries(doc)) {
      const prev = out[key]
      out[key] = isTable(value) && isTable(prev) ? { ...prev, ...value } : isTable(value) ? { ...value } : value
    }
  }
  return out
}

/** A Mulch configuration read into a ProxyConfig, with where each setting was written. */
export interface LoadedMulchConfig {
  readonly config: ProxyConfig
  /** vmfront key → the file, line and key an operator wrote it as (`vmfront check` reports with it). */
  readonly sources: ConfigSources
}

/**
 * Where a vmfront key of a mapped configuration was written: the Mulch key for what
 * mulchd.toml gave (`listen.http` → `proxy_listen_http`, `rate_profile[0].limit_max_delay`
 * → `proxy_rate[0].limit_max_delay_seconds`), else the vmfront file's own key.
 */
export function mulchConfigSources (mapping: MulchMapping, mulch: { file: string, text: string }, own?: { file: string, text: string }): ConfigSources {
  const mulchLines = tomlKeyLines(mulch.text)
  const ownLines = own === undefined ? undefined : tomlKeyLines(own.text)
  return {
    locate (key) {
      const from = [...mapping.origins.keys()].find((k) => key === k || key.startsWith(`${k}.`) || key.startsWith(`${k}[`))
      if (from === undefined) {
        // Not from mulchd.toml: the vmfront file's key, or a vmfront default (blamed on the Mulch file, the only one).
        return own === undefined ? { file: mulch.file, key } : { file: own.file, line: lineOfKey(ownLines!, key), key }
      }
      const origin = mapping.origins.get(from)!
      const rest = key.slice(from.length).replace(/^(\[\d+\]\.)(concurrent_overflow_timeout|limit_max_delay)$/, '$1$2_seconds')
      const mulchKey = origin.mulchKey + rest
      return { file: mulch.file, line: rest === '' ? origin.line : lineOfKey(mulchLines, mulchKey), key: mulchKey }
    }
  }
}

/**
 * Reads Mulch's configuration (and an optional vmfront `--config` for vmfront-only
 * settings) into a checked ProxyConfig.
 * @throws FileInvalidError (exit 2): a problem in either file, or a setting both give
 * @throws ProxyError CONFIG_UNREADABLE: a file cannot be read
 */
export function loadMulchConfig (dirOrFile: string, vmfrontFile?: string, cwd: string = process.cwd()): ProxyConfig {
  return loadMulchConfigWithSources(dirOrFile, vmfrontFile, cwd).config
}

/** loadMulchConfig, with where each setting was written. */
export function loadMulchConfigWithSources (dirOrFile: string, vmfrontFile?: string, cwd: string = process.cwd()): LoadedMulchConfig {
  const file = resolveMulchConfigFile(dirOrFile)
  const folder = dirname(resolve(cwd, file))
  const mulchText = readText(file, 'Mulch configuration')
  const mapping = mulchConfigToProxyConfig({
    file,
    text: mulchText,
    cwd,
    present: { extraCerts: exists(join(folder, MULCH_FILES.extraCerts)), errorTemplate: exists(join(folder, MULCH_FILES.errorTemplate)) }
  })

  let own: Record<string, unknown> = {}
  let ownText: string | undefined
  if (vmfrontFile !== undefined) {
    const text = readText(vmfrontFile, 'config file')
    ownText = text
    own = parseTomlDocument(text, vmfrontFile)
    const conflicts: Problem[] = []
    const ownLines = tomlKeyLines(text)
    for (const [key, origin] of mapping.origins) {
      if (!hasKey(own, key)) continue
      const line = ownLines.get(key)
      const mulchAt = origin.line === undefined ? origin.mulchKey : `${origin.mulchKey}, line ${origin.line}`
      conflicts.push({
        path: line === undefined ? key : `${key} (line ${line})`,
        message: `is also given by ${file} (${mulchAt}): with --mulch-config, give each setting in one file only (remove it from ${vmfrontFile})`
      })
    }
    if (conflicts.length > 0) throw new FileInvalidError('CONFIG_INVALID', vmfrontFile, conflicts)
  }
  const sources = mulchConfigSources(mapping, { file, text: mulchText }, vmfrontFile === undefined || ownText === undefined ? undefined : { file: vmfrontFile, text: ownText })

  const merged = mergeDocs(mapping.defaults, own, mapping.given)
  let config: ProxyConfig
  try {
    // Paths the vmfront file gives are relative to it; the mapping's are absolute.
    config = checkConfig(merged, vmfrontFile ?? file)
  } catch (err) {
    if (!(err instanceof FileInvalidError)) throw err
    throw attribute(err, sources)
  }
  return { config: Object.freeze({ ...config, file, warnings: Object.freeze([...mapping.warnings, ...config.warnings]) }), sources }
}

/**
 * Re-locates each problem `checkConfig` found in the merged document at the file and
 * key the operator wrote (`listen.http` → mulchd.toml's `proxy_listen_http`).
 */
function attribute (err: FileInvalidError, sources: ConfigSources): FileInvalidError {
  const located = err.problems.map((p) => {
    const at = sources.locate(p.path)
    const where = `${at.key}${at.line === undefined ? '' : ` (line ${at.line})`}${at.key === p.path ? '' : ` (vmfront ${p.path})`}`
    return { file: at.file, problem: { path: where, message: p.message } }
  })
  const files = new Set(located.map((l) => l.file))
  if (files.size === 1) return new FileInvalidError('CONFIG_INVALID', located[0].file, located.map((l) => l.problem))
  return new FileInvalidError('CONFIG_INVALID', [...files].join(' and '), located.map((l) => ({ path: `${l.file}: ${l.problem.path}`, message: l.problem.message })))
}
