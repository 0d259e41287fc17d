/**
 * @module daemon-adapter/toml-fields
 * Typed reads from a parsed TOML table that record every problem (key and value)
 * instead of throwing at the first, and flag keys nobody asked for.
 */
import type { Problem } from './errors.ts'

/** A parsed TOML table. */
export type Table = Record<string, unknown>

export function isTable (value: unknown): value is Table {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date)
}

/** A short description of a value's type for messages ("an array", "a number"). */
export function typeName (value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  if (value instanceof Date) return 'a date'
  return `a ${typeof value}`
}

/** Renders a value as it would look in the file, for messages. */
export function show (value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}

/**
 * Reads the keys of one table; `prefix` is the table's own key ("libvirt") so that
 * problems name the full dotted key. Call `unknown()` last to report extra keys.
 */
export class FieldReader {
  readonly #table: Table
  readonly #prefix: string
  readonly #problems: Problem[]
  readonly #seen = new Set<string>()

  constructor (table: Table, prefix: string, problems: Problem[]) {
    this.#table = table
    this.#prefix = prefix
    this.#problems = problems
  }

  /** The full key name for messages. */
  key (key: string): string {
    return this.#prefix === '' ? key : `${this.#prefix}.${key}`
  }

  /** Records a problem against `key`. */
  problem (key: string, message: string): void {
    this.#problems.push({ key: this.key(key), message })
  }

  /** The raw value, marking the key as known. */
  raw (key: string): unknown {
    this.#seen.add(key)
    return this.#table[key]
  }

  has (key: string): boolean {
    return this.#table[key] !== undefined
  }

  string (key: string, fallback: string, check?: (value: string) => string | undefined): string {
    const value = this.raw(key)
    if (value === undefined) return fallback
    if (typeof value !== 'string') {
      this.problem(key, `must be a string, not ${typeName(value)} (${show(value)})`)
      return fallback
    }
    const problem = check?.(value)
    if (problem !== undefined) {
      this.problem(key, problem)
      return fallback
    }
    return value
  }

  /** A string that must be one of `choices`. */
  choice<T extends string> (key: string, fallback: T, choices: readonly T[]): T {
    return this.string(key, fallback, (v) => (choices as readonly string[]).includes(v)
      ? undefined
      : `must be one of ${choices.map((c) => `"${c}"`).join(', ')}, not ${show(v)}`) as T
  }

  boolean (key: string, fallback: boolean): boolean {
    const value = this.raw(key)
    if (value === undefined) return fallback
    if (typeof value !== 'boolean') {
      this.problem(key, `must be true or false, not ${typeName(value)} (${show(value)})`)
      return fallback
    }
    return value
  }

  integer (key: string, fallback: number, min: number, max: number): number {
    const value = this.raw(key)
    if (value === undefined) return fallback
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      this.problem(key, `must be a whole number from ${min} to ${max}, not ${show(value)}`)
      return fallback
    }
    return value
  }

  /** A string converted by `parse`, which returns the value or an error message. */
  parsed<T> (key: string, fallback: string, parse: (text: string) => T | string): T {
    const text = this.string(key, fallback)
    const value = parse(text)
    if (typeof value === 'string') {
      this.problem(key, value)
      const again = parse(fallback)
      return again as T
    }
    return value
  }

  /** A sub-table; absent means empty. */
  table (key: string): Table {
    const value = this.raw(key)
    if (value === undefined) return {}
    if (!isTable(value)) {
      this.problem(key, `must be a table ([${this.key(key)}]), not ${typeName(value)}`)
      return {}
    }
    return value
  }

  /** Reports every key that was never read, with its value and the known keys. */
  unknown (): void {
    const known = [...this.#seen].join(', ')
    for (const [key, value] of Object.entries(this.#table)) {
      if (!this.#seen.has(key)) this.problem(key, `is not a known key (value ${show(value)}; known keys: ${known})`)
    }
  }
}
