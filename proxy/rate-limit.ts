/**
 * @module proxy/rate-limit
 * Per-client-IP admission control for rate profiles (SPEC §5), with mulch-proxy's
 * semantics: a concurrency limit with an overflow wait, then a token bucket that may
 * delay a request up to `limit_max_delay` before refusing it. VIPs are never limited.
 *
 * Hot path: `admit()` is synchronous. Unlimited profiles and VIPs get the
 * `UNLIMITED` constant (no allocation); a request within limits gets a small ticket
 * (or `UNLIMITED` too when there is no slot to give back); only a request that must
 * wait gets a Promise, and one timer while it waits. There are no per-IP timers.
 *
 * Per-IP state is one small `Entry` per (profile, IP). An entry with nothing in
 * flight or waiting and a full bucket carries no information (a fresh one behaves
 * the same), so a sweep drops it: on an unref'd timer every `sweepIntervalMs`, and
 * lazily when a new IP arrives after a missed sweep. Under a flood of distinct IPs
 * the number of entries would grow with the arrival rate times (sweep interval +
 * time to refill the bucket + limit_max_delay), so it is also capped: past
 * `maxTrackedIps` the oldest entries that hold no request are forgotten (their
 * clients get a fresh bucket: failing open keeps the proxy answering everyone).
 * Entries holding a request stay, bounded by the requests themselves.
 *
 * Input decides no other size: at most `maxQueuedPerIp` requests of one IP wait for
 * a slot (more get a 429 at once), and the wait line is an intrusive doubly linked
 * list, so a request leaves it in O(1) wherever it stands.
 */
import { ProxyError } from './errors.ts'
import { createIpMatcher, ipEntryProblem, normalizeIp } from './ip-match.ts'
import type { IpMatcher } from './ip-match.ts'
import { DEFAULT_PROFILE_NAME, isUnlimited, unlimitedProfile } from './rate-profile.ts'
import type { RateProfile } from './rate-profile.ts'

/** Admitted: forward the request, then call `release()` once it ends (idempotent). */
export interface Ticket {
  readonly kind: 'go'
  release (): void
}

/** Why a request was refused; the proxy answers 429 either way. */
export type RefuseReason = 'concurrency' | 'rate'

/** Refused: answer 429 with `Retry-After: retryAfterSec`. Nothing to release. */
export interface Refusal {
  readonly kind: 'refuse'
  readonly reason: RefuseReason
  readonly retryAfterSec: number
}

/** The client went away (signal aborted or `cancel()`) before it was admitted. Nothing to release. */
export interface Aborted {
  readonly kind: 'aborted'
}

/** How a waiting request ends. */
export type Verdict = Ticket | Refusal | Aborted

/**
 * The request must wait (for a concurrency slot, or for a token within
 * `limit_max_delay`). `promise` never rejects. `cancel()` (or aborting the signal
 * given to `admit`) takes it out of the queue at once: it resolves `aborted`, holds
 * no slot and gives its reserved token back. Once settled with `go`, `cancel()`
 * releases that ticket (the client is gone either way); otherwise it does nothing.
 */
export interface Wait {
  readonly kind: 'wait'
  readonly promise: Promise<Verdict>
  cancel (): void
}

/** What `admit()` answers synchronously. */
export type Admission = Ticket | Refusal | Wait

/** The ticket of every request that holds nothing: unlimited profile, VIP, bucket-only profile. */
export const UNLIMITED: Ticket = Object.freeze({ kind: 'go' as const, release (): void {} })

/** The verdict of a request whose client went away while it waited. */
export const ABORTED: Aborted = Object.freeze({ kind: 'aborted' as const })

/** The timer functions the limiter uses; injectable so tests drive time themselves. */
export interface RateLimitTimers {
  setTimeout (fn: () => void, ms: number): unknown
  clearTimeout (handle: unknown): void
}

/** Options of `createRateLimiter`. */
export interface RateLimiterOptions {
  /** Validated profiles (parseRateProfiles); an unlimited `default` is added if missing. */
  readonly profiles: readonly RateProfile[]
  /** Monotonic clock in ms. Default: `performance.now()`. */
  readonly now?: () => number
  /** Default: the global setTimeout/clearTimeout. */
  readonly timers?: RateLimitTimers
  /** How often idle per-IP state is dropped. Default 10 000 ms. */
  readonly sweepIntervalMs?: number
  /** Requests of one IP that may wait for a concurrency slot (per profile); more get a 429 at once. Default 64. */
  readonly maxQueuedPerIp?: number
  /** Per-IP entries kept per profile before the oldest idle ones are forgotten. Default 100 000. */
  readonly maxTrackedIps?: number
}

/** One IP's state in a snapshot. */
export interface IpRateState {
  readonly ip: string
  /** Requests holding a slot (only counted when the profile has a concurrency limit). */
  readonly inFlight: number
  /** Requests waiting for a slot. */
  readonly queued: number
  /** Requests delayed by the token bucket. */
  readonly delayed: number
  /** Tokens taken and not yet refilled; above the burst when delayed requests hold reservations. */
  readonly tokensUsed: number
}

/** One profile's state in a snapshot (for the diagnostic dump). */
export interface ProfileRateState {
  readonly name: string
  readonly limited: boolean
  readonly trackedIps: number
  readonly inFlight: number
  readonly queued: number
  readonly delayed: number
  /**
   * Counts since start. `queueFull`: concurrency 429s (also in `refusedConcurrency`)
   * given at once because the IP already had `maxQueuedPerIp` requests waiting.
   * `evicted`: entries forgotten, bucket unfinished, to stay under `maxTrackedIps`.
   */
  readonly totals: {
    readonly queued: number, readonly delayed: number, readonly refusedConcurrency: number, readonly refusedRate: number,
    readonly aborted: number, readonly queueFull: number, readonly evicted: number
  }
  /** The busiest IPs: by in-flight + queued, then by tokens used. */
  readonly top: readonly IpRateState[]
}

/** The limiter. One per process, shared by every listener. */
export interface RateLimiter {
  /**
   * Decides on one request from `ip` under the profile `profileName` (an unknown
   * name means `default`). `signal` (the client's disconnect) cancels a wait and,
   * once admitted, releases the slot; without it, call `cancel()`/`release()`.
   */
  admit (ip: string, profileName: string, signal?: AbortSignal): Admission
  /** True when a profile of that name is configured (the proxy warns at route load otherwise). */
  hasProfile (name: string): boolean
  /** The profile `admit` applies for that name (`default` for unknown names). */
  profile (name: string): RateProfile
  /** Per-profile state for the diagnostic dump, with the `top` busiest IPs (default 10). */
  snapshot (options?: { top?: number }): ProfileRateState[]
  /** Drops idle per-IP state now; returns how many entries went. Runs by itself too. */
  sweep (): number
  /**
   * A block for one worker of a proxy with several (shared-rate-limit.ts, SPEC §12):
   * takes `slots` free concurrency slots and `tokens` tokens available now (either
   * may be 0: a worker renewing its tokens; what the profile does not limit is not
   * taken), all or
   * nothing (a client near its limit is admitted request by request, exactly: no
   * block sits unused while it is refused), and holds them until `giveBack`:
   * slots, and tokens reported used (they refill from then) or unused. Undefined when that cannot be had at once (unlimited profile, VIP,
   * requests queued for the IP, fewer free slots or tokens): ask `admit` instead.
   */
  lease (ip: string, profileName: string, slots: number, tokens: number): Lease | undefined
  /**
   * Gives back `slots` leased slots of (ip, profile), the IP's oldest queued
   * requests taking them first, and settles leased tokens: `used` ones count as
   * taken now, `unused` ones return to the bucket.
   */
  giveBack (ip: string, profileName: string, slots: number, used?: number, unused?: number): void
  /** Stops the sweep timer. Waiting requests still settle by their own timers. */
  close (): void
}

/** What `lease` took: slots (0 without a concurrency limit) and tokens (0 without a bucket). */
export interface Lease {
  readonly slots: number
  readonly tokens: number
}

/** Float slack when comparing times, so 3 × (1000/3) ms counts as a full second. */
const EPSILON_MS = 1e-6
const DEFAULT_SWEEP_INTERVAL_MS = 10_000
/**
 * A waiting request costs a promise, a timer and a node (~0.5 KB); 64 per IP lets a
 * NAT of several browsers (~6 connections each) queue a full page's worth of
 * requests, while one client can no longer grow the line without bound.
 */
export const DEFAULT_MAX_QUEUED_PER_IP = 64
/** About 150 bytes an entry with the Map slot: ~15 MB per limited profile at most. */
export const DEFAULT_MAX_TRACKED_IPS = 100_000

/** The state of one client IP under one profile. */
class Entry {
  /** Slots taken: admitted requests plus those delayed by the bucket. */
  inFlight = 0
  /** Requests sleeping on a bucket reservation. */
  delayed = 0
  /**
   * GCRA's theoretical arrival time: the instant the bucket is full again. Tokens
   * used = (tat - now) / interval, so the bucket is one number, refilled by time.
   */
  tat = Number.NEGATIVE_INFINITY
  /**
   * Tokens leased to workers and not yet reported used or given back: counted as
   * taken (the bucket has that many fewer) without refilling, because nobody
   * knows yet when they will be used (shared-rate-limit.ts).
   */
  leased = 0
  /**
   * Requests waiting for a slot, oldest first: an intrusive list through
   * `Pending.prev/next`, so any of them leaves it in O(1). Non-empty only while
   * inFlight is at the limit.
   */
  head: Pending | undefined = undefined
  tail: Pending | undefined = undefined
  queued = 0
}

/** An entry that carries no information: a fresh one would behave the same. */
function isIdle (e: Entry, t: number): boolean {
  return e.inFlight === 0 && e.delayed === 0 && e.leased === 0 && e.tat <= t
}

/** An entry no request depends on (nothing in flight, delayed or queued): forgetting it only forgives its bucket. */
function holdsNothing (e: Entry): boolean {
  return e.inFlight === 0 && e.delayed === 0 && e.leased === 0
}

interface Counts { queued: number, delayed: number, refusedConcurrency: number, refusedRate: number, aborted: number, queueFull: number, evicted: number }

interface ProfileState {
  readonly profile: RateProfile
  readonly limited: boolean
  readonly maxInFlight: number
  readonly overflowMs: number
  readonly burst: number
  readonly intervalMs: number
  readonly burstSpanMs: number
  readonly maxDelayMs: number
  readonly vip: IpMatcher
  /** Replaced, not only trimmed, by a sweep that drops most of it. */
  entries: Map<string, Entry>
  /** `entries.size` at which a new IP first makes room (raised while busy entries fill the map). */
  evictAt: number
  readonly counts: Counts
}

/** A waiting request: the `Wait` the caller sees, plus its place in the machinery. */
interface Pending extends Wait {
  phase: 'queued' | 'sleeping' | 'done'
  timer: unknown
  /** The ticket it settled with, for a `cancel()` that comes after. */
  ticket: Ticket | undefined
  readonly resolve: (verdict: Verdict) => void
  readonly state: ProfileState
  readonly entry: Entry
  readonly signal: AbortSignal | undefined
  /** Neighbours in `entry`'s wait line while `phase` is 'queued'. */
  prev: Pending | undefined
  next: Pending | undefined
}

const NODE_TIMERS: RateLimitTimers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => { clearTimeout(handle as ReturnType<typeof setTimeout>) }
}

function checkProfile (p: RateProfile): string | undefined {
  const count = (v: number): boolean => Number.isInteger(v) && v >= 0
  const ms = (v: number): boolean => Number.isFinite(v) && v >= 0
  if (typeof p.name !== 'string' || p.name === '') return 'has no name'
  if (!count(p.concurrentMaxRequests)) return 'concurrentMaxRequests must be a whole number >= 0'
  if (!count(p.limitBurstRequests)) return 'limitBurstRequests must be a whole number >= 0'
  if (!ms(p.concurrentOverflowTimeoutMs) || !ms(p.limitMaxDelayMs)) return 'durations must be finite and >= 0'
  if (!ms(p.limitRequestsPerSecond)) return 'limitRequestsPerSecond must be finite and >= 0'
  if (p.limitBurstRequests > 0 && p.limitRequestsPerSecond === 0) return 'limitRequestsPerSecond must be > 0 with a token bucket'
  for (const vip of p.vipList) {
    const problem = ipEntryProblem(vip)
    if (problem !== undefined) return `vipList: ${problem}`
  }
  return undefined
}

function profileState (profile: RateProfile, maxTrackedIps: number): ProfileState {
  const intervalMs = profile.limitRequestsPerSecond > 0 ? 1000 / profile.limitRequestsPerSecond : 0
  return {
    profile,
    limited: !isUnlimited(profile),
    maxInFlight: profile.concurrentMaxRequests,
    overflowMs: profile.concurrentOverflowTimeoutMs,
    burst: profile.limitBurstRequests,
    intervalMs,
    burstSpanMs: profile.limitBurstRequests * intervalMs,
    maxDelayMs: profile.limitMaxDelayMs,
    vip: createIpMatcher(profile.vipList),
    entries: new Map(),
    evictAt: maxTrackedIps,
    counts: { queued: 0, delayed: 0, refusedConcurrency: 0, refusedRate: 0, aborted: 0, queueFull: 0, evicted: 0 }
  }
}

/**
 * Creates the limiter. Throws a ProxyError `CONFIG_INVALID` when a profile is
 * malformed or two share a name (parseRateProfiles output never is).
 * Wiring: `res` emits 'close' both when the response is done and when the client
 * leaves first, so one listener frees the slot in every case, with no
 * AbortController per request. `release` and `cancel` are idempotent and safe to
 * pass unbound; `cancel` also releases a slot granted after a wait, so a client
 * leaving just as its wait ends cannot leak it.
 * @example
 * const limiter = createRateLimiter({ profiles: parsed.profiles })
 * const a = limiter.admit(clientIp, route.rateProfile ?? 'default')
 * if (a.kind === 'refuse') return answer429(a.retryAfterSec, a.reason)
 * if (a !== UNLIMITED) res.once('close', a.kind === 'go' ? a.release : a.cancel)
 * const v = a.kind === 'wait' ? await a.promise : a
 * if (v.kind === 'aborted') return // client gone, nothing held
 * if (v.kind === 'refuse') return answer429(v.retryAfterSec, v.reason)
 * forward(req, res)
 */
export function createRateLimiter (options: RateLimiterOptions): RateLimiter {
  const now = options.now ?? (() => performance.now())
  const timers = options.timers ?? NODE_TIMERS
  const sweepIntervalMs = options.sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS
  if (!(sweepIntervalMs > 0)) throw new ProxyError('CONFIG_INVALID', `rate limiter: sweepIntervalMs must be > 0, not ${sweepIntervalMs}`)
  const maxQueuedPerIp = options.maxQueuedPerIp ?? DEFAULT_MAX_QUEUED_PER_IP
  const maxTrackedIps = options.maxTrackedIps ?? DEFAULT_MAX_TRACKED_IPS
  if (!Number.isInteger(maxQueuedPerIp) || maxQueuedPerIp < 0) throw new ProxyError('CONFIG_INVALID', `rate limiter: maxQueuedPerIp must be a whole number >= 0, not ${maxQueuedPerIp}`)
  if (!Number.isInteger(maxTrackedIps) || maxTrackedIps < 4) throw new ProxyError('CONFIG_INVALID', `rate limiter: maxTrackedIps must be a whole number >= 4, not ${maxTrackedIps}`)

  const states = new Map<string, ProfileState>()
  for (const profile of options.profiles) {
    const problem = checkProfile(profile)
    if (problem !== undefined) throw new ProxyError('CONFIG_INVALID', `rate profile "${String(profile.name)}": ${problem}`)
    if (states.has(profile.name)) throw new ProxyError('CONFIG_INVALID', `rate profile "${profile.name}" is defined twice`)
    states.set(profile.name, profileState(profile, maxTrackedIps))
  }
  if (!states.has(DEFAULT_PROFILE_NAME)) states.set(DEFAULT_PROFILE_NAME, profileState(unlimitedProfile(), maxTrackedIps))
  const defaultState = states.get(DEFAULT_PROFILE_NAME) as ProfileState
  const limitedStates = [...states.values()].filter((s) => s.limited)

  let lastSweep = now()
  let sweepTimer: unknown
  let closed = false

  function rateRefusal (s: ProfileState, over: number): Refusal {
    s.counts.refusedRate++
    // Retrying after `over` ms the request would fit within limit_max_delay again.
    return { kind: 'refuse', reason: 'rate', retryAfterSec: Math.max(1, Math.ceil(over / 1000)) }
  }

  function concurrencyRefusal (s: ProfileState): Refusal {
    s.counts.refusedConcurrency++
    return { kind: 'refuse', reason: 'concurrency', retryAfterSec: 1 }
  }

  /**
   * Takes a token: 0 = go now; > 0 = token reserved, go after that many ms; < 0 =
   * refused, the wait would exceed limit_max_delay by -result ms (nothing reserved).
   * Reserving future tokens is what makes concurrent delayed requests queue fairly.
   */
  function reserve (s: ProfileState, e: Entry): number {
    const t = now()
    const tat = (e.tat > t ? e.tat : t) + s.intervalMs
    const wait = tat - t - s.burstSpanMs + e.leased * s.intervalMs
    if (wait > s.maxDelayMs + EPSILON_MS) return -(wait - s.maxDelayMs)
    e.tat = tat
    return wait > EPSILON_MS ? wait : 0
  }

  /** An admitted request; holds a slot only when the profile has a concurrency limit. */
  function ticket (s: ProfileState, e: Entry, signal: AbortSignal | undefined): Ticket {
    if (s.maxInFlight === 0) return UNLIMITED
    let released = false
    const release = (): void => {
      if (released) return
      released = true
      signal?.removeEventListener('abort', release)
      releaseSlot(s, e)
    }
    // A client that disconnects mid-request frees its slot even if the caller's
    // end-of-request hook never runs.
    signal?.addEventListener('abort', release)
    return { kind: 'go', release }
  }

  /** Frees one slot of `e`. The oldest queued request takes it over, so newcomers cannot barge in. */
  function releaseSlot (s: ProfileState, e: Entry): void {
    // A loop, not recursion: each queued request the bucket refuses frees the slot again.
    while (e.head !== undefined) {
      const oldest = e.head
      unqueue(oldest)
      if (takeOver(oldest)) return
    }
    e.inFlight--
  }

  /** A queued request gets the slot just freed; false when the bucket refuses it (the slot stays free). */
  function takeOver (p: Pending): boolean {
    timers.clearTimeout(p.timer)
    const s = p.state
    const wait = s.burst === 0 ? 0 : reserve(s, p.entry)
    if (wait < 0) {
      settle(p, rateRefusal(s, -wait))
      return false
    }
    if (wait === 0) settle(p, ticket(s, p.entry, p.signal))
    else sleep(p, wait)
    return true
  }

  function pending (s: ProfileState, e: Entry, signal: AbortSignal | undefined, phase: 'queued' | 'sleeping'): Pending {
    let resolve!: (verdict: Verdict) => void
    const promise = new Promise<Verdict>((r) => { resolve = r })
    const p: Pending = {
      kind: 'wait', promise, cancel: () => { cancel(p) }, phase, timer: undefined, ticket: undefined, resolve, state: s, entry: e, signal,
      prev: undefined, next: undefined
    }
    signal?.addEventListener('abort', p.cancel)
    return p
  }

  function sleep (p: Pending, wait: number): void {
    p.phase = 'sleeping'
    p.entry.delayed++
    p.state.counts.delayed++
    p.timer = timers.setTimeout(() => { wake(p) }, wait)
  }

  function wake (p: Pending): void {
    if (p.phase !== 'sleeping') return
    p.entry.delayed--
    settle(p, ticket(p.state, p.entry, p.signal))
  }

  function overflow (p: Pending): void {
    if (p.phase !== 'queued') return
    unqueue(p)
    settle(p, concurrencyRefusal(p.state))
  }

  /** Appends `p` to its entry's wait line. */
  function enqueue (p: Pending): void {
    const e = p.entry
    p.prev = e.tail
    if (e.tail === undefined) e.head = p
    else e.tail.next = p
    e.tail = p
    e.queued++
  }

  /** Takes `p` (phase 'queued', so in the line) out of its entry's wait line: O(1). */
  function unqueue (p: Pending): void {
    const e = p.entry
    if (p.prev === undefined) e.head = p.next
    else p.prev.next = p.next
    if (p.next === undefined) e.tail = p.prev
    else p.next.prev = p.prev
    p.prev = undefined
    p.next = undefined
    e.queued--
  }

  function settle (p: Pending, verdict: Verdict): void {
    p.phase = 'done'
    if (verdict.kind === 'go') p.ticket = verdict
    p.signal?.removeEventListener('abort', p.cancel)
    p.resolve(verdict)
  }

  function cancel (p: Pending): void {
    const phase = p.phase
    if (phase === 'done') {
      p.ticket?.release()
      return
    }
    timers.clearTimeout(p.timer)
    const s = p.state
    const e = p.entry
    settle(p, ABORTED)
    s.counts.aborted++
    if (phase === 'queued') {
      unqueue(p)
      return
    }
    e.delayed--
    // Give the reserved token back. Later reservations keep their times; the next
    // newcomer simply lands one interval earlier, so the long-run rate still holds.
    e.tat -= s.intervalMs
    if (s.maxInFlight > 0) releaseSlot(s, e)
  }

  /** After a slot is held (or none is needed): the token bucket. */
  function afterSlot (s: ProfileState, e: Entry, signal: AbortSignal | undefined): Admission {
    if (s.burst === 0) return ticket(s, e, signal)
    const wait = reserve(s, e)
    if (wait === 0) return ticket(s, e, signal)
    if (wait < 0) {
      if (s.maxInFlight > 0) releaseSlot(s, e)
      return rateRefusal(s, -wait)
    }
    const p = pending(s, e, signal, 'sleeping')
    sleep(p, wait)
    return p
  }

  function admit (ip: string, profileName: string, signal?: AbortSignal): Admission {
    const s = states.get(profileName) ?? defaultState
    if (!s.limited) return UNLIMITED
    if (signal !== undefined && signal.aborted) {
      return { kind: 'wait', promise: Promise.resolve(ABORTED), cancel (): void {} }
    }
    const key = normalizeIp(ip)
    let e = s.entries.get(key)
    if (e === undefined) {
      // VIPs never get an entry, so a known IP skips the (costlier) VIP match.
      if (s.vip.matches(key)) return UNLIMITED
      if (now() - lastSweep >= sweepIntervalMs) sweep()
      if (s.entries.size >= s.evictAt) makeRoom(s)
      e = new Entry()
      s.entries.set(key, e)
    }
    if (s.maxInFlight > 0) {
      if (e.inFlight >= s.maxInFlight) {
        if (s.overflowMs === 0) return concurrencyRefusal(s)
        if (e.queued >= maxQueuedPerIp) {
          s.counts.queueFull++
          return concurrencyRefusal(s)
        }
        const p = pending(s, e, signal, 'queued')
        enqueue(p)
        s.counts.queued++
        p.timer = timers.setTimeout(() => { overflow(p) }, s.overflowMs)
        return p
      }
      e.inFlight++
    }
    return afterSlot(s, e, signal)
  }

  function lease (ip: string, profileName: string, slots: number, tokens: number): Lease | undefined {
    const s = states.get(profileName)
    if (s === undefined || !s.limited || slots < 0 || tokens < 0) return undefined
    const key = normalizeIp(ip)
    let e = s.entries.get(key)
    if (e === undefined) {
      if (s.vip.matches(key)) return undefined
      if (now() - lastSweep >= sweepIntervalMs) sweep()
      if (s.entries.size >= s.evictAt) makeRoom(s)
      e = new Entry()
      s.entries.set(key, e)
    }
    if (e.queued > 0) return undefined
    const gotSlots = s.maxInFlight === 0 ? 0 : slots
    if (gotSlots > 0 && s.maxInFlight - e.inFlight < slots) return undefined
    let gotTokens = 0
    if (s.burst > 0 && tokens > 0) {
      // Tokens that `reserve` would give without a delay: the bucket's free part.
      const t = now()
      const from = e.tat > t ? e.tat : t
      if (Math.floor((s.burstSpanMs - (from - t)) / s.intervalMs + EPSILON_MS) - e.leased < tokens) return undefined
      gotTokens = tokens
      e.leased += gotTokens
    }
    if (gotSlots + gotTokens === 0) return undefined
    e.inFlight += gotSlots
    return { slots: gotSlots, tokens: gotTokens }
  }

  function giveBack (ip: string, profileName: string, slots: number, used = 0, unused = 0): void {
    const s = states.get(profileName)
    const e = s?.entries.get(normalizeIp(ip))
    if (s === undefined || e === undefined) return
    if (used + unused > 0 && s.burst > 0) {
      const n = Math.min(e.leased, used + unused)
      e.leased -= n
      // Used tokens refill from now, not from when they were used: later, never sooner.
      const t = now()
      e.tat = (e.tat > t ? e.tat : t) + Math.min(used, n) * s.intervalMs
    }
    if (s.maxInFlight === 0) return
    for (let i = 0; i < slots && e.inFlight > 0; i++) releaseSlot(s, e)
  }

  /**
   * Forgets the oldest entries that hold no request (Map order is arrival order)
   * until a quarter of `maxTrackedIps` is free. When busy entries keep the map full,
   * the next attempt waits until another quarter has arrived, so the cost of these
   * passes stays O(1) per new IP.
   */
  function makeRoom (s: ProfileState): void {
    const quarter = Math.floor(maxTrackedIps / 4)
    const target = maxTrackedIps - quarter
    const entries = s.entries
    let evicted = 0
    for (const [ip, e] of entries) {
      if (entries.size <= target) break
      if (holdsNothing(e)) {
        entries.delete(ip)
        evicted++
      }
    }
    s.counts.evicted += evicted
    s.evictAt = Math.max(maxTrackedIps, entries.size + quarter)
  }

  function sweep (): number {
    const t = now()
    lastSweep = t
    let removed = 0
    for (const s of limitedStates) {
      const entries = s.entries
      let idle = 0
      entries.forEach((e) => { if (isIdle(e, t)) idle++ })
      if (idle === 0) continue
      removed += idle
      // Map.delete costs ~0.5 µs an entry, so after a flood (mostly idle entries)
      // copying the few survivors is several times faster than deleting the rest,
      // and it keeps the pause of a sweep short.
      if (idle > entries.size / 4) {
        const survivors = new Map<string, Entry>()
        entries.forEach((e, ip) => { if (!isIdle(e, t)) survivors.set(ip, e) })
        s.entries = survivors
      } else {
        entries.forEach((e, ip) => { if (isIdle(e, t)) entries.delete(ip) })
      }
      s.evictAt = Math.max(maxTrackedIps, s.entries.size + Math.floor(maxTrackedIps / 4))
    }
    return removed
  }

  function tick (): void {
    if (closed) return
    sweep()
    schedule()
  }

  function schedule (): void {
    sweepTimer = timers.setTimeout(tick, sweepIntervalMs)
    // The sweep must never keep the process alive (graceful drain, tests).
    ;(sweepTimer as { unref?: () => void } | undefined)?.unref?.()
  }

  function snapshot (opts: { top?: number } = {}): ProfileRateState[] {
    const topN = opts.top ?? 10
    const t = now()
    const out: ProfileRateState[] = []
    for (const s of states.values()) {
      let inFlight = 0
      let queued = 0
      let delayed = 0
      const top: IpRateState[] = []
      for (const [ip, e] of s.entries) {
        const q = e.queued
        inFlight += e.inFlight
        queued += q
        delayed += e.delayed
        const used = (s.intervalMs > 0 && e.tat > t ? Math.round((e.tat - t) / s.intervalMs * 100) / 100 : 0) + e.leased
        if (topN <= 0 || (e.inFlight === 0 && q === 0 && used === 0)) continue
        insertTop(top, { ip, inFlight: e.inFlight, queued: q, delayed: e.delayed, tokensUsed: used }, topN)
      }
      out.push({ name: s.profile.name, limited: s.limited, trackedIps: s.entries.size, inFlight, queued, delayed, totals: { ...s.counts }, top })
    }
    return out
  }

  if (limitedStates.length > 0) schedule()

  return {
    admit,
    hasProfile: (name) => states.has(name),
    profile: (name) => (states.get(name) ?? defaultState).profile,
    snapshot,
    sweep,
    lease,
    giveBack,
    close (): void {
      closed = true
      if (sweepTimer !== undefined) timers.clearTimeout(sweepTimer)
    }
  }
}

/** The part of a response (http.ServerResponse or Http2ServerResponse) `admitRequest` uses. */
export interface ClosingResponse {
  once (event: 'close', listener: () => void): unknown
}

/**
 * The callback form of `admit` for a request handler, with the wiring done: one
 * `res.once('close')` frees the slot when the response ends or the client leaves
 * first (while waiting included). Call it synchronously from the request event, so
 * 'close' cannot have fired yet. `go` and `refuse` run at once or, after a wait,
 * later; neither runs when the client left while waiting. An exception they throw
 * after a wait goes to `onError` (default: rethrown, i.e. an unhandled rejection).
 * @example
 * admitRequest(limiter, client.ip, route.rateProfile ?? 'default', res, forward,
 *   (r) => { log.info('rate limited', { reason: r.reason }); send429(res, r.retryAfterSec) },
 *   (err) => { log.error('request handler failed', { err }); sendError(res, 500) })
 */
export function admitRequest (
  limiter: RateLimiter, ip: string, profileName: string, res: ClosingResponse,
  go: () => void, refuse: (refusal: Refusal) => void, onError?: (err: unknown) => void
): void {
  const a = limiter.admit(ip, profileName)
  if (a.kind === 'refuse') return refuse(a)
  if (a === UNLIMITED) return go()
  res.once('close', a.kind === 'go' ? a.release : a.cancel)
  if (a.kind === 'go') return go()
  void a.promise.then((v) => {
    if (v.kind === 'go') go()
    else if (v.kind === 'refuse') refuse(v)
  }).catch(onError ?? ((err: unknown) => { throw err }))
}

function busier (a: IpRateState, b: IpRateState): boolean {
  const la = a.inFlight + a.queued
  const lb = b.inFlight + b.queued
  return la !== lb ? la > lb : a.tokensUsed > b.tokensUsed
}

/** Keeps `top` sorted, at most `n` long: O(n) per insert, no full sort of every IP. */
function insertTop (top: IpRateState[], item: IpRateState, n: number): void {
  if (top.length === n && !busier(item, top[n - 1])) return
  let i = top.length === n ? n - 1 : top.length
  top[i] = item
  while (i > 0 && busier(top[i], top[i - 1])) {
    const tmp = top[i - 1]
    top[i - 1] = top[i]
    top[i] = tmp
    i--
  }
}
