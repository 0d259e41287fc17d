/**
 * @module proxy/log
 * A small JSON-lines logger: one object per line, `{ time, level, msg, ...fields }`.
 * Writes go through one buffered stream so the request path never blocks on stdout.
 * Field values are bounded (strings, items, depth, and the line itself): input
 * decides many of them (a header, a route file), and a 5 MB value must not make
 * a 5 MB log line.
 */
import type { LineSink } from './line-sink.ts'

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const
export type LogLevel = typeof LOG_LEVELS[number]
const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 }

export type LogFields = Record<string, unknown>

/** The logging contract every module receives (never a global). */
export interface Logger {
  debug (msg: string, fields?: LogFields): void
  info (msg: string, fields?: LogFields): void
  warn (msg: string, fields?: LogFields): void
  error (msg: string, fields?: LogFields): void
  /** A logger that adds `fields` to every line. */
  child (fields: LogFields): Logger
  /** Writes a pre-built line (the access log), bypassing the level check. */
  raw (line: string): void
  enabled (level: LogLevel): boolean
}

/** A string field longer than this is cut, its full size noted: `…(5242880 bytes)`. */
export const MAX_FIELD_CHARS = 4096
/** A line longer than this is rebuilt with tighter bounds. */
export const MAX_LINE_CHARS = 64 * 1024

interface Bounds { chars: number, items: number, depth: number }
const NORMAL: Bounds = { chars: MAX_FIELD_CHARS, items: 100, depth: 6 }
/** The second try, for a line still over MAX_LINE_CHARS. */
const TIGHT: Bounds = { chars: 256, items: 10, depth: 3 }

function cutString (text: string, chars: number): string {
  // never split a surrogate pair
  const end = /[\uD800-\uDBFF]/.test(text[chars - 1]) ? chars - 1 : chars
  return `${text.slice(0, end)}…(${Buffer.byteLength(text)} bytes)`
}

/**
 * A copy of `value` within `bounds`. Errors become `{ name, message, code, cause }`;
 * values with toJSON (Date, Buffer, URL) are bounded as they would be serialised;
 * the depth bound also ends cycles.
 */
function boundValue (value: unknown, bounds: Bounds, depth = 0): unknown {
  if (typeof value === 'string') return value.length > bounds.chars ? cutString(value, bounds.chars) : value
  if (typeof value !== 'object' || value === null) return value
  if (depth >= bounds.depth) return '…(nested too deep)'
  if (value instanceof Error) return boundValue(errorFields(value), bounds, depth)
  if (Buffer.isBuffer(value)) return `…(a Buffer of ${value.length} bytes)`
  const toJSON = (value as { toJSON?: unknown }).toJSON
  if (typeof toJSON === 'function') return boundValue(toJSON.call(value), bounds, depth + 1)
  if (Array.isArray(value)) {
    const out = value.slice(0, bounds.items).map((v) => boundValue(v, bounds, depth + 1))
    if (value.length > bounds.items) out.push(`…(${value.length - bounds.items} more items)`)
    return out
  }
  // no prototype: a "__proto__" key from input stays a plain key
  const out = Object.create(null) as Record<string, unknown>
  const keys = Object.keys(value)
  for (const key of keys.slice(0, bounds.items)) {
    out[key.length > bounds.chars ? cutString(key, bounds.chars) : key] = boundValue((value as Record<string, unknown>)[key], bounds, depth + 1)
  }
  if (keys.length > bounds.items) out['…'] = `${keys.length - bounds.items} more keys`
  return out
}

function errorFields (value: unknown): unknown {
  if (value instanceof Error) {
    const out: Record<string, unknown> = { message: value.message, name: value.name }
    const code = (value as { code?: unknown }).code
    if (code !== undefined) out.code = code
    // left to boundValue, whose depth bound also ends a cycle of causes
    if (value.cause !== undefined) out.cause = value.cause
    return out
  }
  return value
}

/**
 * Creates a logger writing to a line sink. Error values in fields are
 * reduced to `{ name, message, code, cause }` so stacks stay out of the logs.
 */
export function createLogger (options: { level?: LogLevel | (() => LogLevel), sink: LineSink, base?: LogFields }): Logger {
  // A function: the level a SIGHUP may change (log.level), read at each line.
  const level = options.level ?? 'info'
  const min = typeof level === 'function' ? () => RANK[level()] : () => RANK[level]
  const base = options.base ?? {}
  const write = (line: string): void => { options.sink.write(line) }

  const serialise = (time: string, level: LogLevel, msg: string, bound: LogFields, fields: LogFields | undefined, bounds: Bounds): string => {
    const entry = { time, level, msg: boundValue(msg, bounds), ...(boundValue(bound, bounds) as LogFields) }
    if (fields !== undefined) Object.assign(entry, boundValue(fields, bounds))
    return JSON.stringify(entry)
  }
  function make (bound: LogFields): Logger {
    const emit = (level: LogLevel, msg: string, fields?: LogFields): void => {
      if (RANK[level] < min()) return
      const time = new Date().toISOString()
      let line: string
      try {
        line = serialise(time, level, msg, bound, fields, NORMAL)
        if (line.length > MAX_LINE_CHARS) line = serialise(time, level, msg, bound, fields, TIGHT)
        if (line.length > MAX_LINE_CHARS) line = JSON.stringify({ time, level, msg: cutString(msg, TIGHT.chars), note: `fields too large (${line.length} characters even cut): left out` })
      } catch {
        line = JSON.stringify({ time, level, msg: boundValue(msg, TIGHT), note: 'fields not serialisable' })
      }
      write(line)
    }
    return {
      debug: (msg, fields) => { emit('debug', msg, fields) },
      info: (msg, fields) => { emit('info', msg, fields) },
      warn: (msg, fields) => { emit('warn', msg, fields) },
      error: (msg, fields) => { emit('error', msg, fields) },
      child: (fields) => make({ ...bound, ...fields }),
      raw: write,
      enabled: (level) => RANK[level] >= min()
    }
  }
  return make(base)
}

/** A logger that drops everything (unit tests). */
export function silentLogger (): Logger {
  const noop = (): void => {}
  const logger: Logger = { debug: noop, info: noop, warn: noop, error: noop, child: () => logger, raw: noop, enabled: () => false }
  return logger
}
