/**
 * @module proxy/shared-rate-limit
 * Rate limits that hold for the whole proxy when several workers serve (SPEC §12):
 * the one limiter lives in the primary, and a worker's limiter asks it. A request
 * of a limited profile costs the worker one round trip (batched with the others of
 * its tick) and one notice when it ends; an unlimited profile never leaves the
 * worker. What a client may do is decided in one place, so `concurrent_max_requests
 * = 2` means 2 for the proxy, not 2 per worker, and no sum of per-worker shares can
 * drift. The cost of the alternative (per-worker shares of the limit) would be a
 * limit that is N times looser for a client whose connections land on N workers.
 *
 * Leases, for LARGE limits only: when every limit of a profile is at least
 * LEASE_SHARE x workers x the block, the primary answers a worker's request with a
 * block (up to MAX_SLOT_BLOCK concurrency slots, and tokens) taken from the IP's
 * state as `admit` would take them, and the worker admits that IP's next requests
 * itself until the block is spent: the round trip per request becomes one per
 * block, so the primary's work no longer grows with the request rate. Never more:
 * leased slots count as in flight in the primary until given back (idle for
 * LEASE_IDLE_MS, a worker's exit, a reload), and leased tokens lapse in the worker
 * at the bucket's refill rate from before the request was sent, so what the primary
 * can still give plus what workers still hold is never more than the bucket (the
 * token-bucket bound holds exactly). A block is leased only whole: a client with
 * fewer than a block left is admitted request by request, exactly. The cost is
 * under-admission near a limit: at most workers x block slots or tokens sit unused
 * in other workers, i.e. at most 1/LEASE_SHARE of the limit. Smaller limits (`2 concurrent`, `10 requests`) are
 * never leased: every request asks the primary, exactly as before.
 */
import { ABORTED, UNLIMITED, type Admission, type RateLimiter, type Refusal, type Ticket, type Verdict, type Wait } from './rate-limit.ts'
import { isUnlimited, DEFAULT_PROFILE_NAME, type RateProfile } from './rate-profile.ts'
import type { IpcPeer } from './worker-ipc.ts'

/** A limit is leased only when it is at least this many times workers x block. */
export const LEASE_SHARE = 16
/** Most concurrency slots one lease takes. */
export const MAX_SLOT_BLOCK = 64
/** Smaller blocks than these are not worth a lease (the limit is too small to share). */
const MIN_SLOT_BLOCK = 4
const MIN_TOKEN_BLOCK = 8
/** A lease's tokens cover at most this much of the refill (they lapse at the refill rate anyway). */
const TOKEN_BLOCK_MS = 1000
/** Free leased slots unused this long go back to the primary. */
export const LEASE_IDLE_MS = 500

/** The block a worker may lease for `profile` with `workers` workers; undefined: no lease (small limits). */
export function leaseBlock (profile: RateProfile, workers: number): { slots: number, tokens: number } | undefined {
  if (isUnlimited(profile) || workers < 1) return undefined
  const share = (limit: number): number => Math.floor(limit / (LEASE_SHARE * workers))
  let slots = 1
  if (profile.concurrentMaxRequests > 0) {
    slots = Math.min(MAX_SLOT_BLOCK, share(profile.concurrentMaxRequests))
    if (slots < MIN_SLOT_BLOCK) return undefined
  }
  let tokens = 1
  if (profile.limitBurstRequests > 0) {
    tokens = Math.min(share(profile.limitBurstRequests), Math.floor(profile.limitRequestsPerSecond * TOKEN_BLOCK_MS / 1000))
    if (tokens < MIN_TOKEN_BLOCK) return undefined
  }
  return { slots, tokens }
}

/**
 * The primary's answer: go (with a lease [slots, tokens, refill per second] when one
 * was taken), refused, or aborted. The refill rate is the primary's profile's: the
 * one its bucket refills at is the one leased tokens must lapse at.
 */
type Answer = { go: true, lease?: [number, number, number] } | { refuse: Refusal['reason'], retryAfterSec: number } | { aborted: true }

/** What a worker holds of one (profile, IP) lease. */
interface Held {
  /** Slots are leased (the profile has a concurrency limit); tokens are (it has a bucket). */
  readonly slotted: boolean
  readonly bucket: boolean
  /** Leased slots not in use. */
  free: number
  /** Leased slots in use by this worker's requests. */
  inUse: number
  /** Token grants, oldest first (empty without a bucket). */
  grants: Grant[]
  lastUse: number
}

/**
 * Tokens of one grant not yet used, out of `granted`, taken no earlier than `since`
 * (this worker's clock): they lapse at the refill rate, `perMs` a ms. Each grant
 * lapses on its own: the primary's bucket counted each as used from its own start.
 */
interface Grant { tokens: number, readonly granted: number, readonly since: number, readonly perMs: number }

/** Tokens of `g` usable at `t`. */
function usable (g: Grant, t: number): number {
  return Math.min(g.tokens, Math.floor(g.granted - (t - g.since) * g.perMs))
}

/** Worker side: a RateLimiter whose decisions the primary makes. `now`: a monotonic clock in ms. */
export function createRemoteRateLimiter (profiles: readonly RateProfile[], primary: IpcPeer, now: () => number = () => performance.now()): RateLimiter {
  const byName = new Map(profiles.map((p) => [p.name, p]))
  const fallback = byName.get(DEFAULT_PROFILE_NAME) ?? { name: DEFAULT_PROFILE_NAME } as RateProfile
  const profileOf = (name: string): RateProfile => byName.get(name) ?? fallback
  const leases = new Map<string, Held>()
  // Keys with a lease asked for and not answered yet: one at a time, so a burst of
  // requests does not lease a block each (the others are admitted one by one).
  const asking = new Set<string>()
  let nextId = 1
  let closed = false
  let sweeper: NodeJS.Timeout | undefined

  const giveBack = (ip: string, profile: string, slots: number): void => {
    if (slots > 0) primary.notify('rl.return', [ip, profile, slots])
  }
  /** Admits from the lease when it has a slot and a token that has not lapsed. */
  const takeLocal = (h: Held, t: number): boolean => {
    if (h.slotted && h.free < 1) return false
    if (h.bucket) {
      // Lapsed grants go; the oldest still usable pays.
      while (h.grants.length > 0 && usable(h.grants[0], t) < 1) h.grants.shift()
      if (h.grants.length === 0) return false
      h.grants[0].tokens--
    }
    if (h.slotted) { h.free--; h.inUse++ }
    h.lastUse = t
    return true
  }
  const leasedTicket = (p: RateProfile, ip: string, h: Held): Ticket => {
    if (!h.slotted) return UNLIMITED
    let released = false
    return {
      kind: 'go',
      release () {
        if (released) return
        released = true
        h.inUse--
        if (closed || leases.get(`${p.name} ${ip}`) !== h) giveBack(ip, p.name, 1)
        else { h.free++; h.lastUse = now() }
      }
    }
  }
  const sweep = (): void => {
    const t = now()
    for (const [key, h] of leases) {
      if (t - h.lastUse < LEASE_IDLE_MS) continue
      const cut = key.indexOf(' ')
      giveBack(key.slice(cut + 1), key.slice(0, cut), h.free)
      h.free = 0
      if (h.inUse === 0) leases.delete(key)
    }
    if (leases.size === 0 && sweeper !== undefined) { clearInterval(sweeper); sweeper = undefined }
  }
  const keep = (key: string, h: Held): void => {
    leases.set(key, h)
    if (sweeper === undefined && !closed) {
      sweeper = setInterval(sweep, LEASE_IDLE_MS)
      sweeper.unref()
    }
  }

  return {
    admit (ip, profileName, signal): Admission {
      const profile = profileOf(profileName)
      if (byName.get(profile.name) === undefined || isUnlimited(profile)) return UNLIMITED
      const key = `${profile.name} ${ip}`
      const held = leases.get(key)
      const sentAt = now()
      if (held !== undefined) {
        if (takeLocal(held, sentAt)) return leasedTicket(profile, ip, held)
        // Spent: its free slots go back (in this batch, before the request) so a new block replaces them.
        giveBack(ip, profile.name, held.free)
        held.free = 0
      }
      const id = nextId++
      let settled: Verdict | undefined
      let ended = false
      let leasedEnd: (() => void) | undefined
      const end = (): void => {
        if (ended) return
        ended = true
        if (leasedEnd !== undefined) leasedEnd()
        else primary.notify('rl.end', id)
      }
      const ticket: Ticket = { kind: 'go', release: end }
      const leasing = !asking.has(key)
      if (leasing) asking.add(key)
      const answered = (): void => { if (leasing) asking.delete(key) }
      const promise = primary.request<Answer>('rl.admit', [id, ip, profile.name, leasing ? 1 : 0]).then((a): Verdict => {
        answered()
        if ('go' in a && a.lease !== undefined) {
          const [slots, tokens, perSecond] = a.lease
          if (ended || closed) { giveBack(ip, profile.name, slots); return ABORTED }
          let h = leases.get(key)
          if (h !== undefined && (h.slotted !== slots > 0 || h.bucket !== tokens > 0)) {
            // The profile changed under us (a reload): start over with this grant.
            giveBack(ip, profile.name, h.free)
            leases.delete(key)
            h = undefined
          }
          if (h === undefined) { h = { slotted: slots > 0, bucket: tokens > 0, free: 0, inUse: 0, grants: [], lastUse: sentAt }; keep(key, h) }
          const usesSlot = slots > 0 ? 1 : 0
          h.free += slots - usesSlot
          h.inUse += usesSlot
          // This request uses one; the since is when it was sent, before the primary
          // took them: they lapse a little early, never late.
          if (tokens > 1) h.grants.push({ tokens: tokens - 1, granted: tokens, since: sentAt, perMs: perSecond / 1000 })
          h.lastUse = now()
          const leased = leasedTicket(profile, ip, h)
          leasedEnd = leased.release
          settled = ticket
          return settled
        }
        if (ended) return ABORTED
        if ('go' in a) settled = ticket
        else if ('refuse' in a) { ended = true; settled = { kind: 'refuse', reason: a.refuse, retryAfterSec: a.retryAfterSec } } else { ended = true; settled = ABORTED }
        return settled
      }, (): Verdict => {
        answered()
        // The primary is gone (it is restarting us): fail open for this one request rather than hang it.
        ended = true
        settled = UNLIMITED
        return settled
      })
      const wait: Wait = {
        kind: 'wait',
        promise,
        cancel () {
          if (settled !== undefined && settled.kind !== 'go') return
          end()
        }
      }
      signal?.addEventListener('abort', () => { wait.cancel() }, { once: true })
      return wait
    },
    hasProfile: (name) => byName.has(name),
    profile: profileOf,
    snapshot: () => [],
    sweep: () => 0,
    lease: () => undefined,
    giveBack: () => {},
    close () {
      // Retired (a reload changed the profiles) or stopping: free leased slots go back now, busy ones as they end.
      closed = true
      if (sweeper !== undefined) { clearInterval(sweeper); sweeper = undefined }
      for (const [key, h] of leases) {
        const cut = key.indexOf(' ')
        giveBack(key.slice(cut + 1), key.slice(0, cut), h.free)
        h.free = 0
      }
      leases.clear()
    }
  }
}

/**
 * Primary side: answers one worker's limiter; `release()` ends everything it holds
 * (it died). `workers()`: how many workers serve now (what a lease's block is sized by).
 */
export function serveRateLimits (current: () => RateLimiter, worker: IpcPeer, workers: () => number = () => 1): { release: () => void } {
  // Per id: what to call when the worker says the request ended (release a ticket, cancel a wait).
  const held = new Map<number, () => void>()
  // Leased slots per "profile ip", with the limiter that leased them (a reload may have swapped it since).
  const leased = new Map<string, Array<{ limiter: RateLimiter, slots: number }>>()
  const returnSlots = (ip: string, profile: string, slots: number): void => {
    const key = `${profile} ${ip}`
    const list = leased.get(key)
    if (list === undefined) return
    while (slots > 0 && list.length > 0) {
      const first = list[0]
      const n = Math.min(slots, first.slots)
      first.limiter.giveBack(ip, profile, n)
      first.slots -= n
      slots -= n
      if (first.slots === 0) list.shift()
    }
    if (list.length === 0) leased.delete(key)
  }
  worker.handle('rl.admit', (body) => {
    const [id, ip, profile, wantLease] = body as [number, string, string, number]
    // The limiter of the moment: a TOML reload may have swapped it (held tickets release on theirs).
    const limiter = current()
    if (wantLease === 1) {
      const block = leaseBlock(limiter.profile(profile), workers())
      const got = block === undefined ? undefined : limiter.lease(ip, profile, block.slots, block.tokens)
      if (got !== undefined) {
        if (got.slots > 0) {
          const key = `${profile} ${ip}`
          const list = leased.get(key) ?? []
          const last = list.at(-1)
          if (last?.limiter === limiter) last.slots += got.slots
          else list.push({ limiter, slots: got.slots })
          leased.set(key, list)
        }
        return { go: true, lease: [got.slots, got.tokens, limiter.profile(profile).limitRequestsPerSecond] }
      }
    }
    const a = limiter.admit(ip, profile)
    if (a.kind === 'refuse') return { refuse: a.reason, retryAfterSec: a.retryAfterSec }
    if (a.kind === 'go') {
      if (a !== UNLIMITED) held.set(id, a.release)
      return { go: true }
    }
    held.set(id, a.cancel)
    return a.promise.then((v): Answer => {
      if (v.kind === 'go') {
        if (held.has(id)) held.set(id, v.release)
        else v.release()
        return { go: true }
      }
      held.delete(id)
      return v.kind === 'refuse' ? { refuse: v.reason, retryAfterSec: v.retryAfterSec } : { aborted: true }
    })
  })
  worker.handle('rl.return', (body) => {
    const [ip, profile, slots] = body as [string, string, number]
    returnSlots(ip, profile, slots)
  })
  worker.handle('rl.end', (body) => {
    const id = body as number
    const fn = held.get(id)
    held.delete(id)
    fn?.()
  })
  return {
    release () {
      for (const fn of held.values()) fn()
      held.clear()
      for (const [key, list] of leased) {
        const cut = key.indexOf(' ')
        for (const l of list) l.limiter.giveBack(key.slice(cut + 1), key.slice(0, cut), l.slots)
      }
      leased.clear()
    }
  }
}
