/**
 * @module daemon-adapter/log
 * JSON-lines logger for the daemon: one `{ time, level, msg, ...fields }` object per
 * line. The daemon keeps its own (it may import nothing from proxy/ but the route
 * format), with the same contract as the proxy's.
 */
import type { Writable } from 'node:stream'

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
}

function errorFields (value: unknown): unknown {
  if (value instanceof Error) {
    const out: Record<string, unknown> = { name: value.name, message: value.message }
    const code = (value as { code?: unknown }).code
    if (code !== undefined) out.code = code
    if (value.cause !== undefined) out.cause = errorFields(value.cause)
    return out
  }
  return value
}

/** Creates a logger writing to `out` (default stdout) at `level` and above. */
export function createLogger (options: { level?: LogLevel, out?: Writable } = {}): Logger {
  const out = options.out ?? process.stdout
  const min = RANK[options.level ?? 'info']
  const emit = (level: LogLevel, msg: string, fields?: LogFields): void => {
    if (RANK[level] < min) return
    const entry: Record<string, unknown> = { time: new Date().toISOString(), level, msg }
    if (fields !== undefined) for (const [k, v] of Object.entries(fields)) entry[k] = errorFields(v)
    let line: string
    try {
      line = JSON.stringify(entry)
    } catch {
      line = JSON.stringify({ time: entry.time, level, msg, note: 'fields not serialisable' })
    }
    out.write(line + '\n')
  }
  return {
    debug: (msg, fields) => { emit('debug', msg, fields) },
    info: (msg, fields) => { emit('info', msg, fields) },
    warn: (msg, fields) => { emit('warn', msg, fields) },
    error: (msg, fields) => { emit('error', msg, fields) }
  }
}

/** A logger that drops everything (unit tests). */
export function silentLogger (): Logger {
  const noop = (): void => {}
  return { debug: noop, info: noop, warn: noop, error: noop }
}
