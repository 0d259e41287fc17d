/**
 * @module proxy/config-schema
 * A small declarative checker for TOML tables: each key has a kind and a default.
 * It reports every problem with its dotted key, and rejects unknown keys.
 */
import { unknownKeyMessage } from './suggest.ts'
import { isIP } from 'node:net'
import { parseDuration } from './duration.ts'
import { ipEntryProblem } from './ip-match.ts'
import type { Problem } from './errors.ts'
import { hostnameProblem } from './route-table.ts'

export type KeyKind =
  | { type: 'string' }
  | { type: 'bool' }
  | { type: 'duration', min?: number }
  | { type: 'int', min: number, max: number }
  | { type: 'address' }
  | { type: 'url', protocols: readonly string[], allowEmpty: boolean }
  | { type: 'enum', values: readonly string[] }
  | { type: 'ip-list' }
  | { type: 'string-list' }
  /** DNS host names (certificate names): lower-case, IDN as punycode. */
  | { type: 'hostname-list' }

export interface KeySpec {
  kind: KeyKind
  default: unknown
}

export type TableSpec = Record<string, KeySpec>

/** A listen address: host and port, or undefined when disabled (""). */
export interface ListenAddress {
  host: string
  port: number
  /**
   * Written ":port": every address, IPv6 and IPv4 (host "::", dual stack), or
   * IPv4 alone on a host without IPv6 (server.ts listenOn).
   */
  anyHost?: boolean
}

/** Parses "host:port" / "[v6]:port" / ":port" (dual stack); undefined for "" (disabled). */
export function parseListenAddress (text: string): ListenAddress | undefined | string {
  if (text === '') return undefined
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text)
  if (m === null) return `"${text}" is not host:port`
  const anyHost = m[2] === ''
  const host = m[1] ?? (anyHost ? '::' : m[2])
  const port = Number(m[3])
  if (port > 65535) return `"${text}" has a port over 65535`
  if (anyHost) return { host, port, anyHost }
  if (m[1] !== undefined && isIP(host) !== 6) return `"${text}" has an invalid IPv6 address`
  if (m[2] !== undefined && m[2] !== '' && isIP(host) === 0 && !/^[a-zA-Z0-9.-]+$/.test(host)) return `"${text}" has an invalid host`
  return { host, port }
}

function describe (value: unknown): string {
  if (Array.isArray(value)) return 'an array'
  if (value instanceof Date) return 'a date'
  if (value === null) return 'null'
  return typeof value === 'object' ? 'a table' : `${typeof value} ${JSON.stringify(value)}`
}

/** Checks one value against its kind; returns the converted value or a message. */
function convert (kind: KeyKind, value: unknown): { ok: true, value: unknown } | { ok: false, message: string } {
  const fail = (message: string): { ok: false, message: string } => ({ ok: false, message })
  switch (kind.type) {
    case 'string':
      return typeof value === 'string' ? { ok: true, value } : fail(`must be a string, not ${describe(value)}`)
    case 'bool':
      return typeof value === 'boolean' ? { ok: true, value } : fail(`must be true or false, not ${describe(value)}`)
    case 'duration': {
      if (typeof value !== 'string') return fail(`must be a duration string such as "10s", not ${describe(value)}`)
      const ms = parseDuration(value)
      if (ms === undefined) return fail(`"${value}" is not a duration (use ms, s, m, h or d, e.g. "10s")`)
      if (kind.min !== undefined && ms < kind.min) return fail(`"${value}" is too short (at least ${kind.min}ms)`)
      return { ok: true, value: ms }
    }
    case 'int': {
      const n = typeof value === 'bigint' ? Number(value) : value
      if (typeof n !== 'number' || !Number.isInteger(n)) return fail(`must be a whole number, not ${describe(value)}`)
      if (n < kind.min || n > kind.max) return fail(`${n} is out of range (${kind.min}-${kind.max})`)
      return { ok: true, value: n }
    }
    case 'address': {
      if (typeof value !== 'string') return fail(`must be a "host:port" string, not ${describe(value)}`)
      const parsed = parseListenAddress(value)
      return typeof parsed === 'string' ? fail(parsed) : { ok: true, value: parsed }
    }
    case 'url': {
      if (typeof value !== 'string') return fail(`must be a URL string, not ${describe(value)}`)
      if (value === '' && kind.allowEmpty) return { ok: true, value }
      try {
        const url = new URL(value)
        if (!kind.protocols.includes(url.protocol)) return fail(`"${value}" must use ${kind.protocols.map((p) => p + '//').join(' or ')}`)
        return { ok: true, value }
      } catch {
        return fail(`"${value}" is not a URL`)
      }
    }
    case 'enum':
      return typeof value === 'string' && kind.values.includes(value)
        ? { ok: true, value }
        : fail(`must be one of ${kind.values.map((v) => `"${v}"`).join(', ')}, not ${describe(value)}`)
    case 'ip-list':
    case 'hostname-list':
    case 'string-list': {
      if (!Array.isArray(value)) return fail(`must be an array of strings, not ${describe(value)}`)
      for (const [i, entry] of value.entries()) {
        if (typeof entry !== 'string') return fail(`[${i}] must be a string, not ${describe(entry)}`)
        if (kind.type === 'ip-list') {
          const problem = ipEntryProblem(entry)
          if (problem !== undefined) return fail(`[${i}] ${problem}`)
        }
        if (kind.type === 'hostname-list') {
          const problem = hostnameProblem(entry)
          if (problem !== undefined) return fail(`[${i}] ${problem}`)
        }
      }
      return { ok: true, value: [...value] }
    }
  }
}

/**
 * Checks a TOML table against its spec: unknown keys and wrong values become
 * problems at `prefix.key`; omitted keys take their defaults.
 */
export function checkTable (raw: unknown, spec: TableSpec, prefix: string, problems: Problem[]): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  const at = (key: string): string => (prefix === '' ? key : `${prefix}.${key}`)
  let table: Record<string, unknown> = {}
  if (raw !== undefined) {
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw) || raw instanceof Date) {
      problems.push({ path: prefix, message: `must be a table, not ${describe(raw)}` })
    } else table = raw as Record<string, unknown>
  }
  for (const key of Object.keys(table)) {
    if (!(key in spec)) problems.push({ path: at(key), message: unknownKeyMessage(key, Object.keys(spec)) })
  }
  for (const [key, keySpec] of Object.entries(spec)) {
    const value = key in table ? table[key] : keySpec.default
    const result = convert(keySpec.kind, value)
    if (result.ok) out[key] = result.value
    else problems.push({ path: at(key), message: result.message })
  }
  return out
}
