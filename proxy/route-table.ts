/**
 * @module proxy/route-table
 * The route file format (SPEC §4): its types, its parser and validator, and its
 * serialiser. This is the one module `daemon-adapter/` imports from `proxy/`, so it
 * depends on nothing but `node:` built-ins.
 *
 * Two shapes are accepted and detected by their form:
 * - version 1: `{ "version": 1, "routes": [ { "domain": ..., ... } ] }`
 * - the legacy file Mulch's daemon writes (`mulch-proxy-domains.db`): an object keyed
 *   by domain whose values carry the fields of Mulch's `common.Domain` (`Name`,
 *   `VMName`, `DestinationHost`, ..., `TargetURL`, `Chained`), read the way
 *   mulch-proxy reads them (SPEC §10).
 */
import { isIP } from 'node:net'
import { domainToASCII } from 'node:url'
import { parseRoutePorts, type RoutePortJson, type TcpPortSpec } from './port-table.ts'
// daemon-adapter imports only this module from proxy/: the port shapes pass through it.
export type { RoutePortJson, TcpPortSpec } from './port-table.ts'

/** The redirect codes a route may use. */
export const REDIRECT_CODES = [301, 302, 307, 308] as const
export type RedirectCode = typeof REDIRECT_CODES[number]

/** The route file version this module reads and writes. */
export const ROUTE_FILE_VERSION = 1

/**
 * Where a routed request goes: an `http://host:port` origin (a VM), or for a Mulch
 * `Chained` entry the child proxy's URL, which may be `https://`.
 */
export interface Target {
  /** `host` as written (IPv6 without brackets). */
  readonly host: string
  readonly port: number
  /** `http://host:port` (or `https://` for a chained Mulch child), IPv6 bracketed: the key for connection pools. */
  readonly origin: string
}

/** One validated route. Exactly one of `target` and `redirectTo` is set. */
export interface Route {
  readonly domain: string
  readonly target?: Target
  readonly redirectTo?: string
  readonly redirectCode: RedirectCode
  readonly redirectToHttps: boolean
  readonly vm?: string
  readonly rateProfile?: string
  /**
   * Set for a Mulch domains-file entry with `Chained: true` (a domain a mulch-proxy
   * child registered with its parent): `target` is the child's URL (`TargetURL`),
   * forwarded over plain HTTP/1.1 with Host preserved as mulch-proxy does. In parent
   * mode such forwards must carry `Mulch-PSK` (left to the chain layer).
   */
  readonly mulchChained?: true
}

/** A validated, deep-frozen route table. */
export interface RouteTable {
  readonly version: number
  /** `v1` or `mulch-legacy`: the shape the file was written in. */
  readonly format: 'v1' | 'mulch-legacy'
  readonly routes: readonly Route[]
  /** The v1 file's TCP forwards (SPEC §11); absent when it has none. */
  readonly ports?: readonly TcpPortSpec[]
}

/** A finding, located by its JSON path (`$.routes[1].domain`). */
export interface RouteProblem {
  path: string
  message: string
}

/**
 * The outcome of validation: a table only when there is no error. Every problem is
 * counted (`errorCount`, `warningCount`), the first MAX_KEPT_PROBLEMS are listed.
 */
export type RouteParseResult =
  | { ok: true, table: RouteTable, warnings: RouteProblem[], warningCount: number }
  | { ok: false, errors: RouteProblem[], errorCount: number, warnings: RouteProblem[], warningCount: number }

/**
 * How many problems of each kind a result lists. A 32 MiB file of `{}` routes
 * has tens of millions of problems: listing them all would exhaust memory, and
 * nobody reads past the first ones. 100,000 covers a file of 100,000 bad routes.
 */
export const MAX_KEPT_PROBLEMS = 100_000

/** Values quoted in messages and keys in paths are cut at this many characters. */
const SHOWN_CHARS = 80

/**
 * A value as a message quotes it: JSON text, cut at SHOWN_CHARS with the full
 * length noted, so a 5 MB value is never echoed whole.
 */
export function showValue (value: unknown): string {
  const text = typeof value === 'string' ? value : jsonText(value)
  const quoted = typeof value === 'string' ? JSON.stringify(text.length > SHOWN_CHARS ? text.slice(0, SHOWN_CHARS) : text) : text.slice(0, SHOWN_CHARS)
  return text.length > SHOWN_CHARS ? `${quoted}…(${Buffer.byteLength(text)} bytes)` : quoted
}

/** JSON text of a parsed value; a value nested too deeply to print is named by its kind. */
function jsonText (value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    // JSON.parse accepts nesting that JSON.stringify's recursion cannot print.
    return Array.isArray(value) ? '[a deeply nested array]' : '{a deeply nested object}'
  }
}

/** The JSON path of `key` under `at`: `$.routes` or `$["d.test"]`. */
function keyPath (at: string, key: string): string {
  return /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key) && key.length <= SHOWN_CHARS ? `${at}.${key}` : `${at}[${showValue(key)}]`
}

/** Collects problems: counts them all, keeps the first MAX_KEPT_PROBLEMS. */
class ProblemList {
  readonly list: RouteProblem[] = []
  count = 0
  add (path: string, message: string): void {
    this.count++
    if (this.list.length < MAX_KEPT_PROBLEMS) this.list.push({ path, message })
  }
}

/** The JSON form of one v1 route, as written in the file. */
export interface RouteJson {
  domain: string
  target?: string
  redirect_to?: string
  redirect_code?: number
  redirect_to_https?: boolean
  vm?: string
  rate_profile?: string
}

const TOP_KEYS = new Set(['$schema', 'version', 'routes', 'ports'])
const ROUTE_KEYS = new Set(['domain', 'target', 'redirect_to', 'redirect_code', 'redirect_to_https', 'vm', 'rate_profile'])
/**
 * Every field Mulch's `common.Domain` marshals (`ReverseProxy` is `json:"-"`):
 * mulchd writes them all, with `TargetURL` "" and `Chained` false; a mulch-proxy
 * parent writes its children's domains with `TargetURL` = the child and `Chained`.
 */
const LEGACY_KEYS = new Set(['Name', 'VMName', 'RedirectTo', 'RedirectCode', 'DestinationHost', 'DestinationPort', 'RedirectToHTTPS', 'RateProfile', 'TargetURL', 'Chained'])
/** A label of a name mulchd accepts but DNS (and so ACME) does not: "_" and "*" allowed, hyphens anywhere. */
const MULCH_LABEL = /^[a-z0-9_*-]{1,63}$/
const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/
const PROFILE_NAME = /^[A-Za-z0-9_.-]{1,64}$/

/**
 * Checks a host name: lower-case ASCII labels (IDN as punycode), 1–63 characters
 * each, 253 in all, no leading or trailing hyphen, not an IP address.
 * @returns an error message, or undefined when the name is valid
 */
export function hostnameProblem (name: string): string | undefined {
  if (name.length === 0) return 'is empty'
  if (name.length > 253) return `is ${name.length} characters long (at most 253)`
  if (isIP(name) !== 0) return `"${name}" is an IP address, not a host name`
  if (name !== name.toLowerCase()) return `"${name}" must be lower-case (write "${name.toLowerCase()}")`
  // eslint-disable-next-line no-control-regex
  if (/[^\x00-\x7f]/.test(name)) {
    const ascii = domainToASCII(name)
    return ascii === '' ? `"${name}" is not a valid international domain name` : `"${name}" must be written as punycode ("${ascii}")`
  }
  const labels = name.split('.')
  for (const label of labels) {
    if (label.length === 0) return `"${name}" has an empty label`
    if (!LABEL.test(label)) return `"${name}" has an invalid label "${label}" (letters, digits and inner hyphens, 1-63 characters)`
    if (label.startsWith('xn--') && domainToASCII(label) === '') return `"${name}" has an invalid punycode label "${label}"`
  }
  if (/^[0-9]+$/.test(labels[labels.length - 1])) return `"${name}" has an all-numeric top-level label`
  return undefined
}

/**
 * Checks a name from Mulch's domains file. mulchd takes any lower-cased string as a
 * domain; mulch-proxy routes it when a Host header matches it exactly. The names a
 * Host header can carry (labels of letters, digits, "_", "*" and "-"; IPv4
 * addresses) are accepted even when they are not DNS host names (`_` is common in
 * Mulch VM names): they are routed, and never ordered from ACME (the certificate
 * policy asks hostnameProblem). Names no Host header can match are still errors.
 * @returns an error message, or undefined when the name can be served
 */
export function mulchHostProblem (name: string): string | undefined {
  const strict = hostnameProblem(name)
  if (strict === undefined) return undefined
  if (name.length === 0 || name.length > 253 || name !== name.toLowerCase()) return strict
  // eslint-disable-next-line no-control-regex
  if (/[^\x00-\x7f]/.test(name)) return strict
  for (const label of name.split('.')) {
    if (label.length === 0) return `"${name}" has an empty label`
    if (!MULCH_LABEL.test(label)) return `"${name}" has an invalid label "${label}" (letters, digits, "_", "*" and "-", 1-63 characters)`
  }
  return undefined
}

/**
 * Parses an `http://host:port` target. The port defaults to 80.
 * @returns the target, or an error message
 */
export function parseTarget (text: string): Target | string {
  // quoted only on failure: a valid target costs no JSON.stringify
  const bad = (problem: string): string => `${showValue(text)} ${problem}`
  let url: URL
  try {
    url = new URL(text)
  } catch {
    return bad('is not a URL (expected http://host:port)')
  }
  if (url.protocol !== 'http:') return bad('must use http:// (the VM side speaks plain HTTP)')
  if (url.username !== '' || url.password !== '') return bad('must not carry credentials')
  if (url.pathname !== '/' || url.search !== '' || url.hash !== '' || /^http:\/\/[^/]+\/./.test(text)) {
    return bad('must be only http://host:port, with no path, query or fragment')
  }
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname
  if (host === '') return bad('has no host')
  if (isIP(host) === 0 && hostnameProblem(host) !== undefined && !/^[a-z0-9-]{1,63}$/.test(host)) {
    return bad(`has an invalid host ${showValue(host)}`)
  }
  const port = url.port === '' ? 80 : Number(url.port)
  if (port === 0) return bad('has port 0: a VM listens on a port from 1 to 65535')
  const origin = `http://${isIP(host) === 6 ? `[${host}]` : host}:${port}`
  return { host, port, origin }
}

/**
 * Parses the `TargetURL` of a Mulch `Chained` entry: the child's
 * `proxy_chain_child_url`, `http://` or `https://` (mulch-proxy forwards there with
 * Go's HTTP client), with no path beyond "/" (a prefix would be prepended to every
 * request path by mulch-proxy; vmfront forwards to an origin only).
 * @returns the target, or an error message
 */
export function parseMulchChildUrl (text: string): Target | string {
  const bad = (problem: string): string => `${showValue(text)} ${problem}`
  let url: URL
  try {
    url = new URL(text)
  } catch {
    return bad('is not a URL (expected the child proxy\'s http:// or https:// URL)')
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return bad('must use http:// or https://')
  if (url.username !== '' || url.password !== '') return bad('must not carry credentials')
  if (url.pathname !== '/' || url.search !== '' || url.hash !== '') return bad('must be only scheme://host:port (vmfront forwards to an origin, not a path)')
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname
  if (host === '') return bad('has no host')
  const port = url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port)
  const origin = `${url.protocol}//${isIP(host) === 6 ? `[${host}]` : host}:${port}`
  return { host, port, origin }
}

function typeName (value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  return `a ${typeof value}`
}

function isPlainObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

interface RawRoute {
  domain: unknown
  target?: unknown
  redirectTo?: unknown
  redirectCode?: unknown
  redirectToHttps?: unknown
  vm?: unknown
  rateProfile?: unknown
  /** A Mulch `Chained` entry: `target` is the child's TargetURL (parseMulchChildUrl). */
  chained?: boolean
}

/** Field names as they are written in each format, for error paths. */
interface FieldNames {
  domain: string
  target: string
  redirectTo: string
  redirectCode: string
  redirectToHttps: string
  vm: string
  rateProfile: string
  /** Mulch's format: names mulchd accepts are served (mulchHostProblem), with a warning when not DNS names. */
  mulchHosts?: boolean
}

const V1_FIELDS: FieldNames = {
  domain: 'domain',
  target: 'target',
  redirectTo: 'redirect_to',
  redirectCode: 'redirect_code',
  redirectToHttps: 'redirect_to_https',
  vm: 'vm',
  rateProfile: 'rate_profile'
}

/**
 * The host name check of a format: strict for v1; for Mulch's file, names mulchd
 * accepts are served, with a warning when ACME can never cover them.
 */
function hostProblem (name: string, names: FieldNames, path: string | undefined, warnings: ProblemList): string | undefined {
  const strict = hostnameProblem(name)
  if (strict === undefined || names.mulchHosts !== true) return strict
  const lenient = mulchHostProblem(name)
  if (lenient === undefined && path !== undefined) warnings.add(path, `${strict}: served as mulch-proxy does, but never given an ACME certificate`)
  return lenient
}

function validateRoute (raw: RawRoute, at: string, names: FieldNames, errors: ProblemList, warnings: ProblemList): Route | undefined {
  const before = errors.count
  const err = (field: string, message: string): void => { errors.add(`${at}.${field}`, message) }

  let domain = ''
  if (raw.domain === undefined) err(names.domain, 'is required')
  else if (typeof raw.domain !== 'string') err(names.domain, `must be a string, not ${typeName(raw.domain)}`)
  else {
    domain = raw.domain.endsWith('.') ? raw.domain.slice(0, -1) : raw.domain
    const problem = hostProblem(domain, names, `${at}.${names.domain}`, warnings)
    if (problem !== undefined) err(names.domain, problem)
  }

  let target: Target | undefined
  if (raw.target !== undefined) {
    if (typeof raw.target !== 'string') err(names.target, `must be a string, not ${typeName(raw.target)}`)
    else {
      const parsed = raw.chained === true ? parseMulchChildUrl(raw.target) : parseTarget(raw.target)
      if (typeof parsed === 'string') err(names.target, parsed)
      else target = parsed
    }
  }

  let redirectTo: string | undefined
  if (raw.redirectTo !== undefined) {
    if (typeof raw.redirectTo !== 'string') err(names.redirectTo, `must be a string, not ${typeName(raw.redirectTo)}`)
    else {
      // Only a Location header carries it: nothing to warn about.
      const problem = hostProblem(raw.redirectTo, names, undefined, warnings)
      if (problem !== undefined) err(names.redirectTo, problem)
      else redirectTo = raw.redirectTo
    }
  }

  if (raw.target !== undefined && raw.redirectTo !== undefined) {
    errors.add(at, `has both ${names.target} and ${names.redirectTo}: a route either forwards or redirects`)
  } else if (raw.target === undefined && raw.redirectTo === undefined) {
    errors.add(at, `needs ${names.target} or ${names.redirectTo}`)
  }

  let redirectCode: RedirectCode = 302
  if (raw.redirectCode !== undefined) {
    if (!(REDIRECT_CODES as readonly unknown[]).includes(raw.redirectCode)) {
      err(names.redirectCode, `must be one of ${REDIRECT_CODES.join(', ')}, not ${showValue(raw.redirectCode)}`)
    } else redirectCode = raw.redirectCode as RedirectCode
    if (raw.redirectTo === undefined && raw.target !== undefined) {
      warnings.add(`${at}.${names.redirectCode}`, `is ignored: the route has no ${names.redirectTo}`)
    }
  }

  let redirectToHttps = false
  if (raw.redirectToHttps !== undefined) {
    if (typeof raw.redirectToHttps !== 'boolean') err(names.redirectToHttps, `must be true or false, not ${typeName(raw.redirectToHttps)}`)
    else redirectToHttps = raw.redirectToHttps
  }

  let vm: string | undefined
  if (raw.vm !== undefined) {
    if (typeof raw.vm !== 'string') err(names.vm, `must be a string, not ${typeName(raw.vm)}`)
    else if (raw.vm !== '') vm = raw.vm
  }

  let rateProfile: string | undefined
  if (raw.rateProfile !== undefined) {
    if (typeof raw.rateProfile !== 'string') err(names.rateProfile, `must be a string, not ${typeName(raw.rateProfile)}`)
    else if (raw.rateProfile !== '' && !PROFILE_NAME.test(raw.rateProfile)) err(names.rateProfile, `${showValue(raw.rateProfile)} is not a valid profile name (letters, digits, "_", "." and "-", at most 64)`)
    else if (raw.rateProfile !== '') rateProfile = raw.rateProfile
  }

  if (errors.count !== before) return undefined
  const route: Route = { domain, redirectCode, redirectToHttps }
  if (target !== undefined) Object.assign(route, { target: Object.freeze(target) })
  if (redirectTo !== undefined) Object.assign(route, { redirectTo })
  if (vm !== undefined) Object.assign(route, { vm })
  if (rateProfile !== undefined) Object.assign(route, { rateProfile })
  if (raw.chained === true && target !== undefined) Object.assign(route, { mulchChained: true })
  return Object.freeze(route)
}

function parseV1 (doc: Record<string, unknown>, errors: ProblemList, warnings: ProblemList, ports: TcpPortSpec[]): Route[] {
  for (const key of Object.keys(doc)) {
    if (!TOP_KEYS.has(key)) errors.add(keyPath('$', key), 'is not a known key (expected "version", "routes" and optionally "ports" and "$schema")')
  }
  // Editors find the schema through "$schema" (SPEC §13); its value is not ours to check beyond its type.
  if (doc.$schema !== undefined && typeof doc.$schema !== 'string') errors.add('$.$schema', `must be a string (the schema's URL or path), not ${typeName(doc.$schema)}`)
  if (doc.version === undefined) errors.add('$.version', `is required (${ROUTE_FILE_VERSION})`)
  else if (doc.version !== ROUTE_FILE_VERSION) errors.add('$.version', `must be ${ROUTE_FILE_VERSION}, not ${showValue(doc.version)}`)
  if (doc.ports !== undefined) ports.push(...parseRoutePorts(doc.ports, errors))
  if (!Array.isArray(doc.routes)) {
    errors.add('$.routes', doc.routes === undefined ? 'is required (an array of routes)' : `must be an array, not ${typeName(doc.routes)}`)
    return []
  }
  const routes: Route[] = []
  const seen = new Map<string, number>()
  doc.routes.forEach((entry: unknown, i: number) => {
    const at = `$.routes[${i}]`
    if (!isPlainObject(entry)) {
      errors.add(at, `must be an object, not ${typeName(entry)}`)
      return
    }
    for (const key of Object.keys(entry)) {
      if (!ROUTE_KEYS.has(key)) errors.add(keyPath(at, key), `is not a known key (known: ${[...ROUTE_KEYS].join(', ')})`)
    }
    const route = validateRoute({
      domain: entry.domain,
      target: entry.target,
      redirectTo: entry.redirect_to,
      redirectCode: entry.redirect_code,
      redirectToHttps: entry.redirect_to_https,
      vm: entry.vm,
      rateProfile: entry.rate_profile
    }, at, V1_FIELDS, errors, warnings)
    if (route === undefined) return
    const first = seen.get(route.domain)
    if (first !== undefined) {
      errors.add(`${at}.domain`, `"${route.domain}" is a duplicate of $.routes[${first}]${duplicateNote(entry.domain, route.domain)}`)
      return
    }
    seen.set(route.domain, i)
    routes.push(route)
  })
  return routes
}

/** Why a duplicate may not look like one. */
function duplicateNote (written: unknown, domain: string): string {
  return written !== domain ? ' (a trailing dot names the same domain)' : ''
}

const LEGACY_FIELDS: FieldNames = {
  domain: 'Name',
  target: 'DestinationHost',
  redirectTo: 'RedirectTo',
  redirectCode: 'RedirectCode',
  redirectToHttps: 'RedirectToHTTPS',
  vm: 'VMName',
  rateProfile: 'RateProfile',
  mulchHosts: true
}
/** A `Chained` entry forwards to its `TargetURL`. */
const LEGACY_CHAINED_FIELDS: FieldNames = { ...LEGACY_FIELDS, target: 'TargetURL' }

function parseLegacy (doc: Record<string, unknown>, errors: ProblemList, warnings: ProblemList): Route[] {
  const routes: Route[] = []
  for (const [key, entry] of Object.entries(doc)) {
    const at = `$[${showValue(key)}]`
    if (!isPlainObject(entry)) {
      errors.add(at, `must be an object, not ${typeName(entry)}`)
      continue
    }
    for (const field of Object.keys(entry)) {
      if (!LEGACY_KEYS.has(field)) errors.add(keyPath(at, field), `is not a known key of the Mulch format (known: ${[...LEGACY_KEYS].join(', ')})`)
    }
    const name = entry.Name ?? key
    if (typeof name === 'string' && name !== key) {
      errors.add(`${at}.Name`, `${showValue(name)} does not match its key ${showValue(key)}`)
    }
    if (entry.Chained !== undefined && typeof entry.Chained !== 'boolean') {
      errors.add(`${at}.Chained`, `must be true or false, not ${typeName(entry.Chained)}`)
      continue
    }
    if (entry.TargetURL !== undefined && typeof entry.TargetURL !== 'string') {
      errors.add(`${at}.TargetURL`, `must be a string, not ${typeName(entry.TargetURL)}`)
      continue
    }
    const chained = entry.Chained === true
    const redirectTo = entry.RedirectTo === '' ? undefined : entry.RedirectTo
    let target: unknown
    if (redirectTo === undefined && chained) {
      // A child's domain at a mulch-proxy parent: forwarded to the child's URL.
      if (entry.TargetURL === undefined || entry.TargetURL === '') {
        errors.add(`${at}.TargetURL`, 'is required when Chained is true (the child proxy\'s URL)')
        continue
      }
      target = entry.TargetURL
    } else if (redirectTo === undefined) {
      // mulch-proxy ignores TargetURL here: it rebuilds it from DestinationHost:DestinationPort.
      if (typeof entry.DestinationHost !== 'string' || entry.DestinationHost === '') {
        errors.add(`${at}.DestinationHost`, 'is required when RedirectTo is empty and Chained is not true')
        continue
      }
      const port = entry.DestinationPort ?? 80
      if (!Number.isInteger(port) || (port as number) < 1 || (port as number) > 65535) {
        errors.add(`${at}.DestinationPort`, `must be a port number (1-65535), not ${showValue(port)}`)
        continue
      }
      const host = entry.DestinationHost
      target = `http://${isIP(host) === 6 ? `[${host}]` : host}:${port as number}`
    }
    // mulch-proxy uses the "default" profile for a name it does not know; one that
    // could never name a profile here is the same case, not a reason to refuse the file.
    let rateProfile = entry.RateProfile
    if (typeof rateProfile === 'string' && rateProfile !== '' && !PROFILE_NAME.test(rateProfile)) {
      warnings.add(`${at}.RateProfile`, `${showValue(rateProfile)} is not a valid profile name: the "default" profile applies, as in mulch-proxy`)
      rateProfile = undefined
    }
    // Mulch writes RedirectCode 0 for "unset".
    const redirectCode = entry.RedirectCode === 0 ? undefined : entry.RedirectCode
    const route = validateRoute({
      domain: name,
      target,
      redirectTo,
      redirectCode: redirectTo === undefined ? undefined : redirectCode,
      redirectToHttps: entry.RedirectToHTTPS,
      vm: entry.VMName,
      rateProfile,
      chained: redirectTo === undefined && chained
    }, at, redirectTo === undefined && chained ? LEGACY_CHAINED_FIELDS : LEGACY_FIELDS, errors, warnings)
    if (route === undefined) continue
    // Keys are unique, but "d.test." names the same domain as "d.test" (Name must
    // equal its key, so only the trailing dot can make them differ): one of the two
    // would be silently shadowed. A lookup, not a set of all names: it costs
    // nothing for the keys without a dot.
    if (key !== route.domain && Object.hasOwn(doc, route.domain)) {
      errors.add(at, `"${route.domain}" is a duplicate of $[${showValue(route.domain)}]${duplicateNote(key, route.domain)}`)
      continue
    }
    routes.push(route)
  }
  return routes
}

/** True when a parsed JSON document has the shape of Mulch's legacy domain file. */
export function isLegacyShape (doc: unknown): boolean {
  if (!isPlainObject(doc) || 'version' in doc || 'routes' in doc) return false
  const values = Object.values(doc)
  return values.every((v) => isPlainObject(v) && Object.keys(v).some((k) => LEGACY_KEYS.has(k)))
}

/**
 * Validates a parsed route file, either format. Reports every problem with its JSON
 * path; returns a deep-frozen table only when there is no error.
 */
export function parseRouteTable (doc: unknown): RouteParseResult {
  return parseDocument(doc, new ProblemList())
}

function isEmptyObject (doc: Record<string, unknown>): boolean {
  for (const key in doc) if (Object.hasOwn(doc, key)) return false
  return true
}

/** True for the bare `{}`: Mulch's empty domains file, or an emptied file. */
export function isEmptyLegacyTable (table: RouteTable): boolean {
  return table.format === 'mulch-legacy' && table.routes.length === 0
}

function parseDocument (doc: unknown, warnings: ProblemList): RouteParseResult {
  const errors = new ProblemList()
  if (!isPlainObject(doc)) {
    errors.add('$', `must be an object, not ${typeName(doc)}`)
  } else {
    const legacy = isLegacyShape(doc)
    if (legacy && isEmptyObject(doc)) {
      warnings.add('$', 'is an empty object: read as Mulch\'s empty domains file (no routes). The proxy refuses it in place of a table loaded from a version 1 file; to empty such a table, write {"version":1,"routes":[]}')
    }
    const ports: TcpPortSpec[] = []
    const routes = legacy ? parseLegacy(doc, errors, warnings) : parseV1(doc, errors, warnings, ports)
    if (errors.count === 0) {
      const table: RouteTable = Object.freeze({
        version: ROUTE_FILE_VERSION,
        format: legacy ? 'mulch-legacy' : 'v1',
        routes: Object.freeze(routes),
        ...(ports.length > 0 ? { ports: Object.freeze(ports) } : {})
      })
      return { ok: true, table, warnings: warnings.list, warningCount: warnings.count }
    }
  }
  return { ok: false, errors: errors.list, errorCount: errors.count, warnings: warnings.list, warningCount: warnings.count }
}

/**
 * Parses route file text (JSON). Syntax errors, truncated files included, are
 * reported at `$` with the position JSON.parse gives.
 */
export function parseRouteFileText (text: string): RouteParseResult {
  const warnings = new ProblemList()
  // RFC 8259 §8.1 lets a parser ignore a byte order mark. Editors on Windows add
  // one; its meaning is unambiguous, and JSON.parse alone would report an
  // invisible "Unexpected token". Accepted, with a warning naming it.
  if (text.charCodeAt(0) === 0xfeff) {
    text = text.slice(1)
    warnings.add('$', 'starts with a UTF-8 byte order mark (BOM): ignored; save the file without it (other JSON tools may refuse it)')
  }
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch (err) {
    const message = text.trim() === '' ? 'the file is empty' : `is not valid JSON: ${(err as Error).message}`
    return { ok: false, errors: [{ path: '$', message }], errorCount: 1, warnings: warnings.list, warningCount: warnings.count }
  }
  return parseDocument(doc, warnings)
}

/** The v1 JSON form of a route, with defaults left out. */
export function routeToJson (route: Route): RouteJson {
  const json: RouteJson = { domain: route.domain }
  if (route.target !== undefined) json.target = route.target.origin
  if (route.redirectTo !== undefined) {
    json.redirect_to = route.redirectTo
    json.redirect_code = route.redirectCode
  }
  if (route.redirectToHttps) json.redirect_to_https = true
  if (route.vm !== undefined) json.vm = route.vm
  if (route.rateProfile !== undefined) json.rate_profile = route.rateProfile
  return json
}

/**
 * Serialises routes as a v1 file: sorted by domain, two-space indented, with a
 * trailing newline, so the same table always gives the same bytes.
 */
export function serializeRouteTable (routes: readonly (Route | RouteJson)[], ports: readonly RoutePortJson[] = []): string {
  const json = routes.map((r) => ('redirectCode' in r ? routeToJson(r) : r))
  json.sort((a, b) => (a.domain < b.domain ? -1 : a.domain > b.domain ? 1 : 0))
  // `ports` only when there are some: a file without them keeps its exact bytes.
  const doc = ports.length > 0 ? { version: ROUTE_FILE_VERSION, routes: json, ports } : { version: ROUTE_FILE_VERSION, routes: json }
  return JSON.stringify(doc, null, 2) + '\n'
}
