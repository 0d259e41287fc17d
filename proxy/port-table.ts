/**
 * @module proxy/port-table
 * The TCP port forwards of SPEC §11, from either source, as one validated shape:
 * - Mulch's port file (`mulch-proxy-ports-v2.db`, `common.TCPPortListeners`): an
 *   object keyed by listen port, `ListenAddr` and each `Dest` a Go `net.TCPAddr`
 *   (`{"IP","Port","Zone"}`), `Forwards` keyed by source VM IP or `"*"`;
 * - the route file v1's `ports` array (`listen`, `target`, `proxy_protocol`, `allow`).
 * Problems are reported with JSON paths, like the route table. Imported by
 * route-table.ts, so it depends on nothing but `node:` built-ins and ip-match.
 */
import { isIP } from 'node:net'
import { ipEntryProblem } from './ip-match.ts'

/** Where a forward listens or connects; host "" = every interface (dual stack). */
export interface TcpAddress {
  readonly host: string
  readonly port: number
}

/** One forward of a listener: who may use it and where it goes. */
export interface TcpForwardRule {
  /** IPs or CIDRs of the sources it accepts; empty = anyone. */
  readonly allow: readonly string[]
  readonly target: TcpAddress
  /** 0 none, 1 the text header, 2 the binary header. */
  readonly proxyProtocol: 0 | 1 | 2
  /**
   * The destination port the PROXY header names (Mulch's `Dest.Port` when it
   * connects to `PROXYProtoPort`); undefined = the port the client connected to.
   */
  readonly headerPort?: number
}

/** One listening address with its forwards, most specific first. */
export interface TcpPortSpec {
  readonly listen: TcpAddress
  readonly rules: readonly TcpForwardRule[]
  /** Where it was read (`ports_file $["2222"]`, `routes_file $.ports[0]`), for logs. */
  readonly from: string
}

/** A finding, located by its JSON path. */
export interface PortProblem {
  path: string
  message: string
}

/** What collects problems (the route table's bounded list, or a plain array). */
export interface ProblemSink {
  add (path: string, message: string): void
}

/** `host:port` of an address, IPv6 bracketed, "" host shown as `*`. */
export function addressKey (a: TcpAddress): string {
  const host = a.host === '' ? '*' : isIP(a.host) === 6 ? `[${a.host}]` : a.host
  return `${host}:${a.port}`
}

/** Identity of what a rule does to a connection: kept connections compare it. */
export function ruleKey (rule: TcpForwardRule): string {
  return `${addressKey(rule.target)}|pp${rule.proxyProtocol}|${rule.headerPort ?? ''}`
}

function typeName (value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  return `a ${typeof value}`
}

function isPlainObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function show (value: unknown): string {
  const text = JSON.stringify(value) ?? String(value)
  return text.length > 80 ? `${text.slice(0, 80)}…` : text
}

function isPort (value: unknown, allowZero: boolean): value is number {
  return Number.isInteger(value) && (value as number) >= (allowZero ? 0 : 1) && (value as number) <= 65535
}

/** Parses "host:port", "[v6]:port" or ":port" (every interface). */
export function parseHostPort (text: string): TcpAddress | string {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text)
  if (m === null) return `${show(text)} is not host:port`
  const host = m[1] ?? m[2]
  const port = Number(m[3])
  if (port < 1 || port > 65535) return `${show(text)} has a port out of range (1-65535)`
  if (host !== '' && isIP(host) === 0) return `${show(text)} must name an IP address, not ${show(host)}`
  return { host, port }
}

/** Reads a Go `net.TCPAddr` (`{"IP":"10.0.0.1","Port":22,"Zone":""}`). */
function goAddress (value: unknown, at: string, errors: ProblemSink, listen: boolean): TcpAddress | undefined {
  if (!isPlainObject(value)) {
    errors.add(at, `must be an object {"IP","Port","Zone"}, not ${typeName(value)}`)
    return undefined
  }
  const before = { n: 0 }
  const bad = (path: string, message: string): void => { before.n++; errors.add(path, message) }
  for (const key of Object.keys(value)) {
    if (key !== 'IP' && key !== 'Port' && key !== 'Zone') bad(`${at}.${key}`, 'is not a known key of a Go TCPAddr (known: IP, Port, Zone)')
  }
  const ip = value.IP ?? ''
  // Go writes a nil IP as null: every interface (only meaningful to listen on).
  if (typeof ip !== 'string') bad(`${at}.IP`, `must be a string, not ${typeName(ip)}`)
  else if (ip === '' && !listen) bad(`${at}.IP`, 'is required (the VM address to connect to)')
  else if (ip !== '' && isIP(ip) === 0) bad(`${at}.IP`, `${show(ip)} is not an IP address`)
  if (!isPort(value.Port, false)) bad(`${at}.Port`, `must be a port number (1-65535), not ${show(value.Port)}`)
  const zone = value.Zone ?? ''
  if (typeof zone !== 'string') bad(`${at}.Zone`, `must be a string, not ${typeName(zone)}`)
  if (before.n > 0) return undefined
  const host = (ip as string) === '' ? '' : zone === '' ? ip as string : `${ip as string}%${zone as string}`
  return { host, port: value.Port as number }
}

/**
 * Validates Mulch's port file document. Listen ports must match their key; a
 * `"*"` forward serves anyone, an IP key only that source (checked first).
 */
export function parseMulchPorts (doc: unknown, errors: ProblemSink): TcpPortSpec[] {
  if (!isPlainObject(doc)) {
    errors.add('$', `must be an object keyed by port, not ${typeName(doc)}`)
    return []
  }
  const specs: TcpPortSpec[] = []
  for (const [key, entry] of Object.entries(doc)) {
    const at = `$[${show(key)}]`
    if (!/^\d{1,5}$/.test(key) || !isPort(Number(key), false)) errors.add(at, 'is not a port number (1-65535)')
    if (!isPlainObject(entry)) {
      errors.add(at, `must be an object with ListenAddr and Forwards, not ${typeName(entry)}`)
      continue
    }
    for (const field of Object.keys(entry)) {
      if (field !== 'ListenAddr' && field !== 'Forwards') errors.add(`${at}.${field}`, 'is not a known key (known: ListenAddr, Forwards)')
    }
    const listen = goAddress(entry.ListenAddr, `${at}.ListenAddr`, errors, true)
    if (listen !== undefined && String(listen.port) !== key) errors.add(`${at}.ListenAddr.Port`, `${listen.port} does not match its key ${show(key)}`)
    if (!isPlainObject(entry.Forwards)) {
      errors.add(`${at}.Forwards`, entry.Forwards === undefined ? 'is required (an object keyed by source IP or "*")' : `must be an object, not ${typeName(entry.Forwards)}`)
      continue
    }
    const rules: TcpForwardRule[] = []
    for (const [source, fwd] of Object.entries(entry.Forwards)) {
      const fat = `${at}.Forwards[${show(source)}]`
      if (source !== '*' && isIP(source) === 0) errors.add(fat, 'must be keyed by a source IP address or "*"')
      if (!isPlainObject(fwd)) {
        errors.add(fat, `must be an object with Dest and PROXYProtoPort, not ${typeName(fwd)}`)
        continue
      }
      for (const field of Object.keys(fwd)) {
        if (field !== 'Dest' && field !== 'PROXYProtoPort') errors.add(`${fat}.${field}`, 'is not a known key (known: Dest, PROXYProtoPort)')
      }
      const dest = goAddress(fwd.Dest, `${fat}.Dest`, errors, false)
      const pp = fwd.PROXYProtoPort ?? 0
      if (!isPort(pp, true)) {
        errors.add(`${fat}.PROXYProtoPort`, `must be 0 (none) or a port number, not ${show(pp)}`)
        continue
      }
      if (dest === undefined) continue
      rules.push(pp === 0
        ? { allow: source === '*' ? [] : [source], target: dest, proxyProtocol: 0 }
        : { allow: source === '*' ? [] : [source], target: { host: dest.host, port: pp }, proxyProtocol: 1, headerPort: dest.port })
    }
    if (listen === undefined) continue
    specs.push({ listen, rules: sortRules(rules), from: `ports_file ${at}` })
  }
  return specs
}

/** Per-source rules before the public one: a listed VM gets its own forward. */
function sortRules (rules: TcpForwardRule[]): TcpForwardRule[] {
  return rules.sort((a, b) => (a.allow.length === 0 ? 1 : 0) - (b.allow.length === 0 ? 1 : 0))
}

const ROUTE_PORT_KEYS = new Set(['listen', 'target', 'proxy_protocol', 'allow'])

/** The route file's `ports` array entry as written. */
export interface RoutePortJson {
  listen: string
  target: string
  proxy_protocol?: 0 | 1 | 2
  allow?: string[]
}

/** Validates the route file v1's `ports` array (at `$.ports`). */
export function parseRoutePorts (value: unknown, errors: ProblemSink): TcpPortSpec[] {
  if (!Array.isArray(value)) {
    errors.add('$.ports', `must be an array, not ${typeName(value)}`)
    return []
  }
  const specs: TcpPortSpec[] = []
  const seen = new Map<string, number>()
  value.forEach((entry: unknown, i: number) => {
    const at = `$.ports[${i}]`
    if (!isPlainObject(entry)) {
      errors.add(at, `must be an object, not ${typeName(entry)}`)
      return
    }
    let bad = false
    const err = (path: string, message: string): void => { bad = true; errors.add(path, message) }
    for (const key of Object.keys(entry)) {
      if (!ROUTE_PORT_KEYS.has(key)) err(`${at}.${key}`, `is not a known key (known: ${[...ROUTE_PORT_KEYS].join(', ')})`)
    }
    const address = (field: 'listen' | 'target'): TcpAddress | undefined => {
      const v = entry[field]
      if (typeof v !== 'string') {
        err(`${at}.${field}`, v === undefined ? 'is required ("ip:port")' : `must be a "ip:port" string, not ${typeName(v)}`)
        return undefined
      }
      const parsed = parseHostPort(v)
      if (typeof parsed === 'string') { err(`${at}.${field}`, parsed); return undefined }
      if (field === 'target' && parsed.host === '') { err(`${at}.target`, `${show(v)} needs the VM's IP address`); return undefined }
      return parsed
    }
    const listen = address('listen')
    const target = address('target')
    const pp = entry.proxy_protocol ?? 0
    if (pp !== 0 && pp !== 1 && pp !== 2) err(`${at}.proxy_protocol`, `must be 0 (none), 1 or 2 (PROXY protocol version), not ${show(pp)}`)
    const allow = entry.allow ?? []
    if (!Array.isArray(allow)) err(`${at}.allow`, `must be an array of IPs or CIDRs, not ${typeName(allow)}`)
    else {
      allow.forEach((a: unknown, j: number) => {
        if (typeof a !== 'string') err(`${at}.allow[${j}]`, `must be a string, not ${typeName(a)}`)
        else {
          const problem = ipEntryProblem(a)
          if (problem !== undefined) err(`${at}.allow[${j}]`, problem)
        }
      })
    }
    if (bad || listen === undefined || target === undefined) return
    const key = addressKey(listen)
    const rule: TcpForwardRule = { allow: [...(allow as string[])], target, proxyProtocol: pp as 0 | 1 | 2 }
    const first = seen.get(key)
    if (first !== undefined) {
      // One listener for several sources (Mulch's VM-to-VM imports: the gateway port
      // every importing VM connects to, forwarded by source address): entries on one
      // address share it when each names its sources and no source is named twice.
      const spec = specs[first]
      const taken = new Set(spec.rules.flatMap((r) => r.allow))
      const shared = rule.allow.find((a) => taken.has(a))
      if (rule.allow.length === 0 || spec.rules.some((r) => r.allow.length === 0) || shared !== undefined) {
        const why = shared !== undefined ? `: both forward ${show(shared)}` : ': two entries on one address must each list their own sources in "allow"'
        errors.add(`${at}.listen`, `${show(entry.listen)} is a duplicate of $.ports[${spec.from.slice(spec.from.indexOf('[') + 1, spec.from.indexOf(']'))}]${why}`)
        return
      }
      specs[first] = { ...spec, rules: [...spec.rules, rule] }
      return
    }
    seen.set(key, specs.length)
    specs.push({ listen, rules: [rule], from: `routes_file ${at}` })
  })
  return specs
}

/**
 * Joins the port file's and the route file's forwards. Two sources naming the
 * same listen address is an error of the whole set (all or nothing).
 */
export function mergePortSpecs (...lists: ReadonlyArray<readonly TcpPortSpec[]>): { specs: TcpPortSpec[], problems: PortProblem[] } {
  const byKey = new Map<string, TcpPortSpec>()
  const problems: PortProblem[] = []
  for (const list of lists) {
    for (const spec of list) {
      const key = addressKey(spec.listen)
      const other = byKey.get(key)
      if (other !== undefined) problems.push({ path: spec.from, message: `listens on ${key} like ${other.from}` })
      else byKey.set(key, spec)
    }
  }
  return { specs: [...byKey.values()], problems }
}

/** Parses port file text; a syntax error is one problem at `$`. */
export function parsePortFileText (text: string): { ok: true, specs: TcpPortSpec[] } | { ok: false, problems: PortProblem[] } {
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch (err) {
    return { ok: false, problems: [{ path: '$', message: text.trim() === '' ? 'the file is empty' : `is not valid JSON: ${(err as Error).message}` }] }
  }
  const problems: PortProblem[] = []
  const specs = parseMulchPorts(doc, { add: (path, message) => { if (problems.length < 1000) problems.push({ path, message }) } })
  return problems.length > 0 ? { ok: false, problems } : { ok: true, specs }
}
