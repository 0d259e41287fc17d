/**
 * @module proxy/rate-profile
 * The `[[rate_profile]]` tables of the proxy config (SPEC §3): their validated form,
 * their defaults, and the parser that turns the TOML value into frozen profiles or
 * a list of problems located by key (`rate_profile[1].limit_max_delay`).
 * proxy/rate-limit.ts enforces them; this module only reads configuration.
 */
import { parseDuration } from './duration.ts'
import type { Problem } from './errors.ts'
import { ipEntryProblem } from './ip-match.ts'

/** One validated rate profile. Durations are in milliseconds. */
export interface RateProfile {
  /** Routes select the profile by this name (route file `rate_profile`). */
  readonly name: string
  /** Requests in flight per client IP; 0 = unlimited. */
  readonly concurrentMaxRequests: number
  /** How long an extra request waits for a slot before a 429. */
  readonly concurrentOverflowTimeoutMs: number
  /** Token bucket capacity per client IP; 0 turns the bucket off. */
  readonly limitBurstRequests: number
  /** Token refill rate; must be > 0 when the bucket is on. */
  readonly limitRequestsPerSecond: number
  /** Longest delay before a request is answered 429 instead; 0 = 429 at once. */
  readonly limitMaxDelayMs: number
  /** IPs and CIDRs never limited by this profile. */
  readonly vipList: readonly string[]
}

/** The profile every route without (or with an unknown) `rate_profile` uses. */
export const DEFAULT_PROFILE_NAME = 'default'

/** The value of every key left out of a `[[rate_profile]]` table. */
export const RATE_PROFILE_DEFAULTS: Omit<RateProfile, 'name'> = Object.freeze({
  concurrentMaxRequests: 0,
  concurrentOverflowTimeoutMs: 2000,
  limitBurstRequests: 0,
  limitRequestsPerSecond: 0,
  limitMaxDelayMs: 0,
  vipList: Object.freeze([])
})

/** The outcome of parsing: profiles (always including `default`) only when there is no error. */
export type RateProfilesResult =
  | { ok: true, profiles: readonly RateProfile[], warnings: Problem[] }
  | { ok: false, problems: Problem[], warnings: Problem[] }

/** Same rule as route files use for `rate_profile` (proxy/route-table.ts). */
const PROFILE_NAME = /^[A-Za-z0-9_.-]{1,64}$/
/** Keeps typos such as 1e9 from silently meaning "unlimited in practice". */
const MAX_COUNT = 1_000_000
const KEYS = [
  'name', 'concurrent_max_requests', 'concurrent_overflow_timeout', 'limit_burst_requests',
  'limit_requests_per_second', 'limit_max_delay', 'vip_list'
] as const
const KNOWN = new Set<string>(KEYS)
/** The keys of a `[[rate_profile]]` table (proxy/config.schema.json is checked against them). */
export const RATE_PROFILE_KEYS: readonly string[] = KEYS

/**
 * The profile a route (file or chained) is served under: its `rate_profile` when
 * that profile exists, else "default". The one place this fallback is decided.
 */
export function servedProfileName (name: string | undefined, hasProfile: (name: string) => boolean): string {
  return name !== undefined && hasProfile(name) ? name : DEFAULT_PROFILE_NAME
}

/** The implicit `default` profile: unlimited. */
export function unlimitedProfile (name: string = DEFAULT_PROFILE_NAME): RateProfile {
  return Object.freeze({ name, ...RATE_PROFILE_DEFAULTS })
}

/** True when the profile limits nothing (no concurrency limit, no bucket). */
export function isUnlimited (profile: RateProfile): boolean {
  return profile.concurrentMaxRequests === 0 && profile.limitBurstRequests === 0
}

function typeName (value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  return `a ${typeof value}`
}

/** Shows a TOML value in a message; bigint is not JSON. */
function show (value: unknown): string {
  return typeof value === 'bigint' ? String(value) : JSON.stringify(value) ?? String(value)
}

function isTable (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/**
 * Parses the `[[rate_profile]]` array of a config file (its TOML value, or undefined
 * when absent). Every problem is reported, each located as `<keyPrefix>[i].<key>`
 * (0-based index). A `default` profile always exists: if none is declared an
 * unlimited one is added. Duplicate names, unknown keys, bad durations and VIP
 * entries that are neither IPs nor CIDRs are errors; a token-bucket key set while
 * `limit_burst_requests` is 0 is an error too (the operator meant a limit that would
 * silently not apply). Returned profiles are deep-frozen.
 * @example
 * const r = parseRateProfiles(toml.rate_profile)
 * if (!r.ok) for (const p of r.problems) console.error(`${p.path}: ${p.message}`)
 */
export function parseRateProfiles (raw: unknown, keyPrefix = 'rate_profile'): RateProfilesResult {
  const problems: Problem[] = []
  const warnings: Problem[] = []
  const profiles: RateProfile[] = []
  if (raw === undefined) return { ok: true, profiles: Object.freeze([unlimitedProfile()]), warnings }
  if (!Array.isArray(raw)) {
    return { ok: false, problems: [{ path: keyPrefix, message: `must be an array of tables ([[${keyPrefix}]]), not ${typeName(raw)}` }], warnings }
  }
  const seen = new Map<string, number>()
  raw.forEach((table: unknown, i: number) => {
    const at = `${keyPrefix}[${i}]`
    if (!isTable(table)) {
      problems.push({ path: at, message: `must be a table, not ${typeName(table)}` })
      return
    }
    const profile = parseOne(table, at, problems, warnings)
    if (profile === undefined) return
    const first = seen.get(profile.name)
    if (first !== undefined) {
      problems.push({ path: `${at}.name`, message: `"${profile.name}" is already the name of ${keyPrefix}[${first}]` })
      return
    }
    seen.set(profile.name, i)
    profiles.push(profile)
  })
  if (problems.length > 0) return { ok: false, problems, warnings }
  if (!seen.has(DEFAULT_PROFILE_NAME)) profiles.push(unlimitedProfile())
  return { ok: true, profiles: Object.freeze(profiles), warnings }
}

function parseOne (table: Record<string, unknown>, at: string, problems: Problem[], warnings: Problem[]): RateProfile | undefined {
  const before = problems.length
  const err = (key: string, message: string): void => { problems.push({ path: `${at}.${key}`, message }) }
  for (const key of Object.keys(table)) {
    if (!KNOWN.has(key)) err(key, `is not a known key (known: ${KEYS.join(', ')})`)
  }

  let name = ''
  if (table.name === undefined) problems.push({ path: at, message: 'needs a name' })
  else if (typeof table.name !== 'string') err('name', `must be a string, not ${typeName(table.name)}`)
  else if (!PROFILE_NAME.test(table.name)) err('name', `"${table.name}" is not a valid profile name (letters, digits, "_", "-", ".", 1-64 characters)`)
  else name = table.name

  const count = (key: string, fallback: number): number => {
    const value = table[key]
    if (value === undefined) return fallback
    const n = typeof value === 'bigint' ? Number(value) : value
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) err(key, `must be a whole number >= 0, not ${show(value)}`)
    else if (n > MAX_COUNT) err(key, `must be at most ${MAX_COUNT} (0 means unlimited)`)
    else return n
    return fallback
  }
  const duration = (key: string, fallback: number): number => {
    const value = table[key]
    if (value === undefined) return fallback
    if (typeof value !== 'string') {
      err(key, `must be a duration string such as "2s" or "500ms", not ${typeName(value)}`)
      return fallback
    }
    const ms = parseDuration(value)
    if (ms === undefined) err(key, `"${value}" is not a duration (such as "2s", "500ms", "1m30s")`)
    return ms ?? fallback
  }

  const concurrentMaxRequests = count('concurrent_max_requests', RATE_PROFILE_DEFAULTS.concurrentMaxRequests)
  const concurrentOverflowTimeoutMs = duration('concurrent_overflow_timeout', RATE_PROFILE_DEFAULTS.concurrentOverflowTimeoutMs)
  const limitBurstRequests = count('limit_burst_requests', RATE_PROFILE_DEFAULTS.limitBurstRequests)
  const limitMaxDelayMs = duration('limit_max_delay', RATE_PROFILE_DEFAULTS.limitMaxDelayMs)

  let limitRequestsPerSecond = RATE_PROFILE_DEFAULTS.limitRequestsPerSecond
  const rps = typeof table.limit_requests_per_second === 'bigint' ? Number(table.limit_requests_per_second) : table.limit_requests_per_second
  if (rps !== undefined) {
    if (typeof rps !== 'number' || !Number.isFinite(rps) || rps < 0) err('limit_requests_per_second', `must be a number >= 0, not ${show(rps)}`)
    else if (rps > MAX_COUNT) err('limit_requests_per_second', `must be at most ${MAX_COUNT}`)
    else limitRequestsPerSecond = rps
  }

  if (limitBurstRequests > 0 && limitRequestsPerSecond === 0 && problems.length === before) {
    err('limit_requests_per_second', 'must be > 0 when limit_burst_requests is set (the bucket would never refill)')
  }
  if (limitBurstRequests === 0 && problems.length === before) {
    // mulch-proxy refused these too: a rate the bucket would silently not apply.
    if (limitRequestsPerSecond > 0) err('limit_requests_per_second', 'has no effect while limit_burst_requests is 0 (set limit_burst_requests to enable the token bucket)')
    if (limitMaxDelayMs > 0) err('limit_max_delay', 'has no effect while limit_burst_requests is 0 (set limit_burst_requests to enable the token bucket)')
  }

  const vipList: string[] = []
  if (table.vip_list !== undefined) {
    if (!Array.isArray(table.vip_list)) err('vip_list', `must be an array of IPs or CIDRs, not ${typeName(table.vip_list)}`)
    else {
      table.vip_list.forEach((entry: unknown, j: number) => {
        const path = `vip_list[${j}]`
        if (typeof entry !== 'string') return err(path, `must be a string, not ${typeName(entry)}`)
        const problem = ipEntryProblem(entry)
        if (problem !== undefined) return err(path, problem)
        if (vipList.includes(entry)) warnings.push({ path: `${at}.${path}`, message: `"${entry}" is listed twice` })
        else vipList.push(entry)
      })
    }
  }

  if (problems.length !== before) return undefined
  const profile: RateProfile = Object.freeze({
    name,
    concurrentMaxRequests,
    concurrentOverflowTimeoutMs,
    limitBurstRequests,
    limitRequestsPerSecond,
    limitMaxDelayMs,
    vipList: Object.freeze(vipList)
  })
  if (isUnlimited(profile) && vipList.length > 0) {
    warnings.push({ path: `${at}.vip_list`, message: 'is ignored: the profile limits nothing' })
  }
  return profile
}
