/**
 * @module proxy/log
 * A small JSON-lines logger: one object per line, `{ time, level, msg, ...fields }`.
 * Writes go through one buffered stream so the request path never blocks on stdout.
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

function errorFields (value: unknown): unknown {
  if (value instanceof Error) {
    const out: Record<string, unknown> = { message: value.message, name: value.name }
    const code = (value as { code?: unknown }).code
    if (code !== undefined) out.code = code
    if (value.cause !== undefined) out.cause = errorFields(value.cause)
    return out
  }
  return value
}

/**
 * Creates a logger writing to a line sink. Error values in fields are
 * reduced to `{ name, message, code, cause }` so stacks stay out of the logs.
 */
export function createLogger (options: { level?: LogLevel, sink: LineSink, base?: LogFields }): Logger {
  const min = RANK[options.level ?? 'info']
  const base = options.base ?? {}
  const write = (line: string): void => { options.sink.write(line) }

  function make (bound: LogFields): Logger {
    const emit = (level: LogLevel, msg: string, fields?: LogFields): void => {
      if (RANK[level] < min) return
      const entry: Record<string, unknown> = { time: new Date().toISOString(), level, msg, ...bound }
      if (fields !== undefined) for (const [k, v] of Object.entries(fields)) entry[k] = errorFields(v)
      let line: string
      try {
        line = JSON.stringify(entry)
      } catch {
        line = JSON.stringify({ time: entry.time, level, msg, note: 'fields not serialisable' })
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
      enabled: (level) => RANK[level] >= min
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
