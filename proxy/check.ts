/**
 * @module proxy/check
 * `vmfront check` (SPEC §13): everything a start would read, checked without
 * binding a port or writing a file: the TOML, the route file, the extra
 * certificates, the error template, the ACME options, listener conflicts and the
 * chain URLs. Every problem is collected (never only the first), located by file,
 * line where known and key, and worded for an operator.
 *
 * Two entry points: checkConfigFile reads a vmfront TOML; checkProxyConfig takes
 * an already mapped ProxyConfig (the future `--mulch-config` maps mulchd.toml to
 * one) with a ConfigSources that says where each key was written.
 */
import { readFileSync, statSync } from 'node:fs'
import { isIP } from 'node:net'
import { parse as parseToml } from 'smol-toml'
import { acmeOptionProblems, describeError, inspectExtraCerts } from '../certs/index.ts'
import { apiListenAddress } from './chain/parent.ts'
import { checkConfig, embeddedDefaultToml, type ProxyConfig } from './config.ts'
import type { ListenAddress } from './config-schema.ts'
import { createErrorPages } from './error-pages.ts'
import { FileInvalidError, ProxyError, type Problem } from './errors.ts'
import { jsonPathLines, jsonSyntaxPosition } from './json-positions.ts'
import { readRouteFile, RouteFileReadError } from './route-file-read.ts'
import { parseRouteFileText, type RouteProblem } from './route-table.ts'
import { parsePortFileText } from './port-table.ts'
import { lineOfKey, tomlKeyAtLine, tomlKeyLines } from './toml-positions.ts'

/** One finding. `line` is 1-based; `key` is a dotted TOML key or a JSON path ("" for the whole file). */
export interface CheckProblem {
  file: string
  line?: number
  key: string
  message: string
  severity: 'error' | 'warning'
}

/** What a valid configuration would start with. */
export interface CheckSummary {
  routes: number
  routeFormat: 'v1' | 'mulch-legacy' | 'none'
  /** `[[certificate]]` entries of extra_certs_file that load. */
  certificates: number
  /** Listener name → address, as it would be bound. */
  listeners: Record<string, string>
}

/** The outcome: `ok` when no problem is an error (warnings allowed). */
export interface CheckReport {
  ok: boolean
  problems: CheckProblem[]
  /** Set when the configuration itself could be read (files it names may still have problems). */
  summary: CheckSummary | undefined
}

/**
 * Where a configuration key was written. For a vmfront TOML, the key itself and
 * its line; a mapped config (mulchd.toml) answers with its own file and key name.
 */
export interface ConfigSources {
  locate (key: string): { file: string, line?: number, key: string }
}

/** Options of checkProxyConfig. */
export interface CheckOptions {
  /**
   * Top-level keys or sections (`tls`, `routes_file`, `rate_profile`...) whose values
   * were invalid and replaced by defaults: what depends on them is not checked, so
   * one typo is reported once, not again as a missing file or a port conflict.
   */
  skip?: ReadonlySet<string>
  /** "Now" for certificate expiry (tests). */
  now?: number
}

/** A source map for a vmfront TOML text. */
export function tomlSources (file: string, text: string): ConfigSources {
  const lines = tomlKeyLines(text)
  return { locate: (key) => ({ file, line: lineOfKey(lines, key), key }) }
}

const EMBEDDED = '<embedded default>'

/**
 * Checks a vmfront TOML file (the embedded default when `file` is undefined) and
 * everything it names. Reads files only; binds and writes nothing.
 */
export async function checkConfigFile (file: string | undefined, options: { now?: number } = {}): Promise<CheckReport> {
  const name = file ?? EMBEDDED
  let text: string
  if (file === undefined) text = embeddedDefaultToml()
  else {
    try {
      text = readFileSync(file, 'utf8')
    } catch (err) {
      return report([{ file: name, key: '', message: `cannot read the config file: ${describeError(err)}`, severity: 'error' }], undefined)
    }
  }
  const sources = tomlSources(name, text)
  let doc: Record<string, unknown>
  try {
    doc = parseToml(text) as Record<string, unknown>
  } catch (err) {
    return report([tomlSyntaxProblem(name, text, err)], undefined)
  }
  try {
    return await checkProxyConfig(checkConfig(doc, name), sources, options)
  } catch (err) {
    if (!(err instanceof FileInvalidError)) throw err
    const problems = err.problems.map((p) => located(sources, p, 'error'))
    // Check what the rest of the file names too: drop the sections that have a
    // problem (they take their defaults) and skip every check that depends on them.
    const skip = new Set(err.problems.map((p) => topKey(p.path)))
    const rest = Object.fromEntries(Object.entries(doc).filter(([k]) => !skip.has(k)))
    let config: ProxyConfig
    try {
      config = checkConfig(rest, name)
    } catch {
      return report(problems, undefined)
    }
    const more = await checkProxyConfig(config, sources, { ...options, skip })
    return report([...problems, ...more.problems], undefined)
  }
}

/**
 * Checks a Mulch installation as `vmfront proxy --mulch-config` would read it
 * (mulchd.toml, plus `vmfront` a vmfront TOML for vmfront-only settings): problems
 * name mulchd.toml's own keys and lines. Reads files only; binds and writes nothing.
 */
export async function checkMulchConfig (dirOrFile: string, vmfrontFile: string | undefined, options: { now?: number } = {}): Promise<CheckReport> {
  const { loadMulchConfigWithSources } = await import('./mulch-config.ts')
  let loaded
  try {
    loaded = loadMulchConfigWithSources(dirOrFile, vmfrontFile)
  } catch (err) {
    if (err instanceof FileInvalidError) {
      return report(err.problems.map((p): CheckProblem => {
        // The mapping says "key (line N)": keep the key, and the line apart.
        const m = /^(.*) \(line (\d+)\)(.*)$/.exec(p.path)
        return m === null
          ? { file: err.file, key: p.path, message: p.message, severity: 'error' }
          : { file: err.file, line: Number(m[2]), key: m[1] + m[3], message: p.message, severity: 'error' }
      }), undefined)
    }
    // Its message starts with the file it names.
    if (err instanceof ProxyError) return report([{ file: dirOrFile, key: '', message: err.message.replace(/^[^:]*: /, ''), severity: 'error' }], undefined)
    throw err
  }
  return await checkProxyConfig(loaded.config, loaded.sources, options)
}

/**
 * Checks a checked ProxyConfig against the world it would start in: the files it
 * names (route file, extra certificates, error template, ACME CA file), the
 * listener addresses against each other, the chain and ACME URLs. Its config-level
 * warnings are reported too. Binds and writes nothing.
 */
export async function checkProxyConfig (config: ProxyConfig, sources: ConfigSources, options: CheckOptions = {}): Promise<CheckReport> {
  const skip = options.skip ?? new Set<string>()
  const problems: CheckProblem[] = []
  const at = (key: string, message: string, severity: CheckProblem['severity'] = 'error'): void => {
    problems.push({ ...sources.locate(key), message, severity })
  }
  for (const warning of config.warnings) {
    const m = /^([^:\s]+): (.*)$/s.exec(warning)
    if (m !== null) at(m[1], m[2], 'warning')
    else at('', warning, 'warning')
  }
  const listeners = listenerList(config, skip)
  for (const conflict of listenerConflicts(listeners, (key) => sources.locate(key).key)) at(conflict.key, conflict.message)
  for (const p of chainUrlProblems(config, skip)) at(p.key, p.message, p.severity)
  if (!skip.has('acme')) {
    const { acme } = config
    for (const p of acmeOptionProblems({ enabled: acme.enabled, directoryUrl: acme.directoryUrl, email: acme.email, caFile: acme.caFile, profile: acme.profile })) at(p.key, p.message)
  }
  if (!skip.has('data_dir')) {
    const p = dataDirProblem(config.dataDir)
    if (p !== undefined) at('data_dir', p.message, p.severity)
  }
  if (!skip.has('error_pages') && config.errorPages.template !== '') {
    try {
      createErrorPages(config.errorPages.template)
    } catch (err) {
      if (!(err instanceof ProxyError)) throw err
      at('error_pages.template', `cannot read ${config.errorPages.template}: ${describeError(err.cause ?? err)}`)
    }
  }
  let routes = 0
  let routeFormat: CheckSummary['routeFormat'] = 'none'
  if (!skip.has('routes_file')) {
    const r = await checkRouteFile(config, skip, at)
    problems.push(...r.problems)
    routes = r.routes
    routeFormat = r.format
  }
  if (!skip.has('ports_file') && config.portsFile !== '') problems.push(...await checkPortFile(config.portsFile, at))
  let certificates = 0
  if (!skip.has('tls') && config.tls.extraCertsFile !== '') {
    const c = await checkExtraCerts(config.tls.extraCertsFile, options.now, at)
    problems.push(...c.problems)
    certificates = c.certificates
  }
  const summary: CheckSummary = { routes, routeFormat, certificates, listeners: Object.fromEntries(listeners.map((l) => [l.name, formatAddress(l.address)])) }
  return report(problems, summary)
}

/** Problems grouped by file (in order of first mention), by line within a file. */
function report (problems: CheckProblem[], summary: CheckSummary | undefined): CheckReport {
  const files = [...new Set(problems.map((p) => p.file))]
  const sorted = problems
    .map((p, i) => ({ p, i }))
    .sort((a, b) => files.indexOf(a.p.file) - files.indexOf(b.p.file) || (a.p.line ?? Infinity) - (b.p.line ?? Infinity) || a.i - b.i)
    .map(({ p }) => p)
  return { ok: !problems.some((p) => p.severity === 'error'), problems: sorted, summary }
}

function located (sources: ConfigSources, p: Problem, severity: CheckProblem['severity']): CheckProblem {
  return { ...sources.locate(p.path), message: p.message, severity }
}

/** `chain.mode` → `chain`; `rate_profile[1].name` → `rate_profile`. */
function topKey (path: string): string {
  return /^[^.[]*/.exec(path)?.[0] ?? path
}

/** A smol-toml syntax error, located at its line and worded without the parser's banner. */
function tomlSyntaxProblem (file: string, text: string, err: unknown): CheckProblem {
  const e = err as { message?: unknown, line?: unknown, column?: unknown }
  const first = String(e.message ?? err).split('\n')[0].replace(/^Invalid TOML document: /, '')
  const line = typeof e.line === 'number' ? e.line : undefined
  const column = typeof e.column === 'number' ? `, column ${e.column}` : ''
  // The key (or table) written on that line, as a dotted path.
  const key = line === undefined ? '' : tomlKeyAtLine(text, line)
  // smol-toml says "control characters" when a string runs into the end of its line.
  const row = line === undefined ? undefined : text.split(/\r?\n/)[line - 1]
  const unfinished = first.startsWith('control characters') && row !== undefined && typeof e.column === 'number' && e.column > row.length
  const what = unfinished ? 'unfinished string (the closing quote is missing on this line)' : first
  return { file, ...(line === undefined ? {} : { line }), key, message: `invalid TOML${line === undefined ? '' : ` at line ${line}${column}`}: ${what}`, severity: 'error' }
}

interface NamedListener {
  name: string
  key: string
  address: ListenAddress
}

function listenerList (config: ProxyConfig, skip: ReadonlySet<string>): NamedListener[] {
  const out: NamedListener[] = []
  if (!skip.has('listen')) {
    for (const name of ['http', 'https', 'admin'] as const) {
      const address = config.listen[name]
      if (address !== undefined) out.push({ name, key: `listen.${name}`, address })
    }
  }
  if (!skip.has('example_backend') && config.exampleBackend !== undefined) out.push({ name: 'example_backend', key: 'example_backend', address: config.exampleBackend })
  if (!skip.has('chain') && config.chain.mode === 'parent' && config.chain.parentUrl !== '') {
    const api = apiListenAddress(config.chain.parentUrl)
    out.push({ name: 'chain_api', key: 'chain.parent_url', address: { host: api.host, port: api.port } })
  }
  return out
}

function formatAddress (a: ListenAddress): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`
}

/** True when binding both would fail: same port, and one address includes the other. */
function overlaps (a: ListenAddress, b: ListenAddress): boolean {
  if (a.port === 0 || a.port !== b.port) return false
  const host = (x: ListenAddress): string => (x.host === 'localhost' ? '127.0.0.1' : x.host.toLowerCase())
  const [ha, hb] = [host(a), host(b)]
  if (ha === hb || ha === '::' || hb === '::') return true // "::" is dual stack: every address
  if (ha === '0.0.0.0') return isIP(hb) !== 6
  if (hb === '0.0.0.0') return isIP(ha) !== 6
  return false
}

/** `keyName` spells a key as its source writes it (a mapped config's own key names). */
function listenerConflicts (listeners: readonly NamedListener[], keyName: (key: string) => string): Array<{ key: string, message: string }> {
  const out: Array<{ key: string, message: string }> = []
  for (const [i, b] of listeners.entries()) {
    const a = listeners.slice(0, i).find((x) => overlaps(x.address, b.address))
    if (a === undefined) continue
    const what = b.name === 'chain_api' ? `the chain API address of ${keyName(b.key)} (${formatAddress(b.address)})` : `"${formatAddress(b.address)}"`
    out.push({ key: b.key, message: `${what} takes the port of ${keyName(a.key)} = "${formatAddress(a.address)}": two listeners cannot share port ${b.address.port}; give each its own port` })
  }
  return out
}

/** Chain URLs: what a start would silently ignore or mishandle. */
function chainUrlProblems (config: ProxyConfig, skip: ReadonlySet<string>): Array<{ key: string, message: string, severity: CheckProblem['severity'] }> {
  if (skip.has('chain')) return []
  const { chain } = config
  const out: Array<{ key: string, message: string, severity: CheckProblem['severity'] }> = []
  const urls: Array<[string, string]> = [['chain.parent_url', chain.parentUrl], ['chain.child_url', chain.childUrl]]
  for (const [key, value] of urls) {
    if (value === '') continue
    if (chain.mode === 'none' || (key === 'chain.child_url' && chain.mode !== 'child')) {
      out.push({ key, message: `is ignored when chain.mode is "${chain.mode}"`, severity: 'warning' })
      continue
    }
    const url = new URL(value)
    if (url.hostname === '') out.push({ key, message: `"${value}" has no host`, severity: 'error' })
    if (url.username !== '' || url.password !== '') out.push({ key, message: `"${value}" must not carry a user name or password (chain.psk authenticates)`, severity: 'error' })
    else if ((url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.hash !== '') {
      out.push({ key, message: `"${value}": only scheme://host:port is used, the rest is ignored (expected ${url.origin})`, severity: 'warning' })
    }
  }
  return out
}

/** data_dir: a start creates a missing one; something else in its place, or a group/world-writable one, is reported. */
function dataDirProblem (dir: string): { message: string, severity: CheckProblem['severity'] } | undefined {
  let st
  try {
    st = statSync(dir)
  } catch {
    return undefined
  }
  if (!st.isDirectory()) return { message: `${dir} exists and is not a directory (certificates, the ACME account and dumps are kept there)`, severity: 'error' }
  if ((st.mode & 0o022) !== 0) return { message: `${dir} is writable by group or others (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}): certificates and keys live there`, severity: 'warning' }
  return undefined
}

type At = (key: string, message: string, severity?: CheckProblem['severity']) => void

/** Problems of the route file, located by JSON line; a missing file is a warning (a start serves an empty table). */
async function checkRouteFile (config: ProxyConfig, skip: ReadonlySet<string>, at: At): Promise<{ problems: CheckProblem[], routes: number, format: CheckSummary['routeFormat'] }> {
  const file = config.routesFile
  let text: string
  try {
    text = await readRouteFile(file)
  } catch (err) {
    if (err instanceof RouteFileReadError && err.missing) at('routes_file', `${file} does not exist: the proxy would start with no routes, and load the file on SIGHUP once it is written`, 'warning')
    else at('routes_file', `${file} ${err instanceof RouteFileReadError ? err.message : `cannot be read: ${describeError(err)}`}`)
    return { problems: [], routes: 0, format: 'none' }
  }
  const result = parseRouteFileText(text)
  const fileProblems: Array<{ p: RouteProblem, severity: CheckProblem['severity'] }> = [
    ...(result.ok ? [] : result.errors).map((p) => ({ p, severity: 'error' as const })),
    ...result.warnings.map((p) => ({ p, severity: 'warning' as const }))
  ]
  if (result.ok && !skip.has('rate_profile')) {
    const profiles = new Set(config.rateProfiles.map((p) => p.name))
    for (const [i, route] of result.table.routes.entries()) {
      const name = route.rateProfile ?? 'default'
      // Only a v1 file has a $.routes[i] path; a Mulch file is keyed by domain.
      const path = result.table.format === 'v1' ? `$.routes[${i}].rate_profile` : `$[${JSON.stringify(route.domain)}].RateProfile`
      if (!profiles.has(name)) fileProblems.push({ p: { path, message: `unknown rate profile "${name}": the route would use "default" (the [[rate_profile]] names are: ${[...profiles].join(', ')})` }, severity: 'warning' })
    }
  }
  const syntax = !result.ok && result.errors[0]?.path === '$' && result.errors[0].message.startsWith('is not valid JSON')
  const lines = syntax ? new Map<string, number>() : jsonPathLines(text, fileProblems.map(({ p }) => p.path))
  const problems = fileProblems.map(({ p, severity }): CheckProblem => {
    if (syntax && p.path === '$' && severity === 'error') return { file, ...jsonSyntaxProblem(text, p.message), key: '$', severity }
    const line = lines.get(p.path)
    return { file, ...(line === undefined ? {} : { line }), key: p.path, message: p.message, severity }
  })
  if (!result.ok && result.errorCount > result.errors.length) {
    problems.push({ file, key: '$', message: `and ${result.errorCount - result.errors.length} more problems (only the first ${result.errors.length} are listed)`, severity: 'error' })
  }
  return result.ok
    ? { problems, routes: result.table.routes.length, format: result.table.format }
    : { problems, routes: 0, format: 'none' }
}

/** Problems of ports_file (Mulch's mulch-proxy-ports-v2.db), located by line; a missing file is a warning, as at start. */
async function checkPortFile (file: string, at: At): Promise<CheckProblem[]> {
  let text: string
  try {
    text = await readRouteFile(file)
  } catch (err) {
    if (err instanceof RouteFileReadError && err.missing) at('ports_file', `${file} does not exist: no port is forwarded until it is written (then SIGHUP)`, 'warning')
    else at('ports_file', `${file} ${err instanceof RouteFileReadError ? err.message : `cannot be read: ${describeError(err)}`}`)
    return []
  }
  const result = parsePortFileText(text)
  if (result.ok) return []
  const lines = jsonPathLines(text, result.problems.map((p) => p.path))
  return result.problems.map((p): CheckProblem => {
    const line = lines.get(p.path)
    return { file, ...(line === undefined ? {} : { line }), key: p.path, message: p.message, severity: 'error' }
  })
}

/**
 * A JSON syntax error on one line, with its position: JSON.parse's own words
 * without the text excerpt it quotes (which may span lines).
 */
function jsonSyntaxProblem (text: string, message: string): { line?: number, message: string } {
  const core = message.replace(/^is not valid JSON: /, '')
    .replace(/, (\.\.\.)?".*" is not valid JSON$/s, '')
    .replace(/ in JSON at position \d+( \(line \d+ column \d+\))?$/, '')
  const at = jsonSyntaxPosition(text)
  return at === undefined
    ? { message: `is not valid JSON: ${core}` }
    : { line: at.line, message: `is not valid JSON at line ${at.line}, column ${at.column}: ${core}` }
}

/** Problems of extra_certs_file, located by line in that file; unreadable as a whole: on tls.extra_certs_file. */
async function checkExtraCerts (file: string, now: number | undefined, at: At): Promise<{ problems: CheckProblem[], certificates: number }> {
  const inspection = await inspectExtraCerts(file, now)
  let lines = new Map<string, number>()
  try {
    lines = tomlKeyLines(readFileSync(file, 'utf8'))
  } catch { /* unreadable: reported below by the inspection */ }
  const problems: CheckProblem[] = []
  for (const p of inspection.problems) {
    if (p.code === 'CERTS_EXTRA_UNREADABLE' && p.entry === undefined) {
      at('tls.extra_certs_file', p.message.replace(/^cannot read: /, `cannot read ${file}: `))
      continue
    }
    const line = p.line ?? (p.key === '' ? undefined : lineOfKey(lines, p.key))
    problems.push({ file, ...(line === undefined ? {} : { line }), key: p.key, message: p.message, severity: p.severity })
  }
  return { problems, certificates: inspection.entries }
}

function plural (n: number, word: string): string {
  return `${n.toLocaleString('en-US')} ${word}${n === 1 ? '' : 's'}`
}

/**
 * The report as `vmfront check` prints it: one line per problem
 * (`FILE:LINE: KEY: message`, warnings marked), and a one-line verdict.
 */
export function formatCheckReport (configName: string, report: CheckReport): { problems: string, verdict: string } {
  const lines = report.problems.map((p) => {
    const where = p.line === undefined ? p.file : `${p.file}:${p.line}`
    return `${where}: ${p.severity === 'warning' ? 'warning: ' : ''}${p.key === '' ? '' : `${p.key}: `}${p.message}\n`
  })
  const errors = report.problems.filter((p) => p.severity === 'error').length
  const warnings = report.problems.length - errors
  const warned = warnings === 0 ? '' : ` (${plural(warnings, 'warning')})`
  if (!report.ok) return { problems: lines.join(''), verdict: `vmfront check: ${configName} is invalid: ${plural(errors, 'problem')}${warned}\n` }
  const s = report.summary
  const listeners = s === undefined ? '' : Object.entries(s.listeners).map(([name, address]) => `${name} ${address}`).join(', ')
  const routes = s === undefined ? '' : `${plural(s.routes, 'route')}${s.routeFormat === 'none' ? '' : ` (${s.routeFormat} format)`}`
  const certs = s === undefined ? '' : plural(s.certificates, 'extra certificate')
  return { problems: lines.join(''), verdict: `vmfront check: ${configName} is valid${warned}: ${routes}, ${certs}, listeners: ${listeners === '' ? 'none' : listeners}\n` }
}
