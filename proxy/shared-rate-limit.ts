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
 * state, and the worker admits that IP's next requests itself until the block is
 * spent (it asks for more tokens when half are used, reporting those it used): the
 * round trip per request becomes one per block, so the primary's work no longer
 * grows with the request rate. Never more than the limit: leased slots count as in
 * flight in the primary until given back (idle for LEASE_IDLE_MS, spent, a reload,
 * the worker's exit); leased tokens count as taken and do not refill until the
 * worker reports them used (they refill from the report, later than from their
 * use) or gives them back unused, so what the primary can give plus what workers
 * hold never exceeds the bucket. A block is leased only whole: a client with fewer
 * than a block left is admitted request by request, exactly. The cost is
 * under-admission near a limit: at most workers x block slots or tokens sit unused
 * in other workers (at most 1/LEASE_SHARE of the limit), and used tokens refill up
 * to one renewal later. Smaller limits (`2 concurrent`, `10 requests`) are never
 * leased: every request asks the primary, exactly as before.
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
    tokens = share(profile.limitBurstRequests)
    if (tokens < MIN_TOKEN_BLOCK) return undefined
  }
  return { slots, tokens }
}

/** The primary's answer: go (with a lease [slots, tokens] when one was taken), refused, or aborted. */
type Answer = { go: true, lease?: [number, number] } | { refuse: Refusal['reason'], retryAfterSec: number } | { aborted: true }

/** What a worker holds of one (profile, IP) lease. */
interface Held {
  readonly key: string
  readonly ip: string
  readonly profile: string
  /** Slots are leased (the profile has a concurrency limit); tokens are (it has a bucket). */
  readonly slotted: boolean
  readonly bucket: boolean
  /** Leased slots not in use. */
  free: number
  /** Leased slots in use by this worker's requests. */
  inUse: number
  /** Leased tokens not used yet. */
  tokens: number
  /** Tokens used and not yet reported to the primary (its bucket refills them from the report). */
  used: number
  /** The last block's size: a renewal is asked for below half of it. */
  granted: number
  lastUse: number
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

  const giveBack = (ip: string, profile: string, slots: number, used = 0, unused = 0): void => {
    if (slots + used + unused > 0) primary.notify('rl.return', [ip, profile, slots, used, unused])
  }
  /** Everything `h` holds and does not use goes back; what it used is reported. */
  const settle = (h: Held): void => {
    giveBack(h.ip, h.profile, h.free, h.used, h.tokens)
    h.free = 0
    h.used = 0
    h.tokens = 0
  }
  /** Admits from the lease when it has a free slot and a token. */
  const takeLocal = (h: Held, t: number): boolean => {
    if (h.slotted && h.free < 1) return false
    if (h.bucket) {
      if (h.tokens < 1) return false
      h.tokens--
      h.used++
      if (h.tokens < h.granted / 2) renew(h)
    }
    if (h.slotted) { h.free--; h.inUse++ }
    h.lastUse = t
    return true
  }
  /**
   * Half the block's tokens used: reports them and asks for more now, while this
   * worker still admits from what it holds, so a busy client's requests neither
   * wait for the next block nor fall back to one round trip each meanwhile.
   */
  const renew = (h: Held): void => {
    if (asking.has(h.key)) return
    asking.add(h.key)
    const used = h.used
    h.used = 0
    primary.request<number>('rl.lease', [h.ip, h.profile, used]).then((tokens) => {
      asking.delete(h.key)
      if (tokens === 0) return
      if (closed || leases.get(h.key) !== h) { giveBack(h.ip, h.profile, 0, 0, tokens); return }
      h.tokens += tokens
      h.granted = tokens
    }, () => { asking.delete(h.key) })
  }
  const leasedTicket = (h: Held): Ticket => {
    if (!h.slotted) return UNLIMITED
    let released = false
    return {
      kind: 'go',
      release () {
        if (released) return
        released = true
        h.inUse--
        if (closed || leases.get(h.key) !== h) giveBack(h.ip, h.profile, 1)
        else { h.free++; h.lastUse = now() }
      }
    }
  }
  const sweep = (): void => {
    const t = now()
    for (const [key, h] of leases) {
      if (t - h.lastUse < LEASE_IDLE_MS) continue
      settle(h)
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
      if (held !== undefined) {
        if (takeLocal(held, now())) return leasedTicket(held)
        // Spent: what is left goes back (in this batch, before the request) so a new block replaces it.
        settle(held)
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
          const [slots, tokens] = a.lease
          if (ended || closed) { giveBack(ip, profile.name, slots, 0, tokens); return ABORTED }
          let h = leases.get(key)
          if (h !== undefined && (h.slotted !== slots > 0 || h.bucket !== tokens > 0)) {
            // The profile changed under us (a reload): start over with this block.
            settle(h)
            leases.delete(key)
            h = undefined
          }
          if (h === undefined) {
            h = { key, ip, profile: profile.name, slotted: slots > 0, bucket: tokens > 0, free: 0, inUse: 0, tokens: 0, used: 0, granted: 0, lastUse: 0 }
            keep(key, h)
          }
          // This request takes one of each.
          if (slots > 0) { h.free += slots - 1; h.inUse++ }
          if (tokens > 0) { h.tokens += tokens - 1; h.used++; h.granted = tokens }
          h.lastUse = now()
          leasedEnd = leasedTicket(h).release
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
      for (const h of leases.values()) settle(h)
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
  // What this worker holds by lease per "profile ip", with the limiter that leased it
  // (a reload may have swapped it since), oldest first.
  const leased = new Map<string, Array<{ limiter: RateLimiter, slots: number, tokens: number }>>()
  const record = (limiter: RateLimiter, ip: string, profile: string, slots: number, tokens: number): void => {
    const key = `${profile} ${ip}`
    const list = leased.get(key) ?? []
    const last = list.at(-1)
    if (last?.limiter === limiter) { last.slots += slots; last.tokens += tokens } else list.push({ limiter, slots, tokens })
    leased.set(key, list)
  }
  /** Settles what the worker gives back: slots, tokens it used (reported), tokens it did not use. */
  const settleLease = (ip: string, profile: string, slots: number, used: number, unused: number): void => {
    const key = `${profile} ${ip}`
    const list = leased.get(key)
    if (list === undefined) return
    for (const l of list) {
      const s = Math.min(slots, l.slots)
      const u = Math.min(used, l.tokens)
      const n = Math.min(unused, l.tokens - u)
      if (s + u + n > 0) l.limiter.giveBack(ip, profile, s, u, n)
      l.slots -= s
      l.tokens -= u + n
      slots -= s
      used -= u
      unused -= n
    }
    const left = list.filter((l) => l.slots + l.tokens > 0)
    if (left.length === 0) leased.delete(key)
    else leased.set(key, left)
  }
  worker.handle('rl.admit', (body) => {
    const [id, ip, profile, wantLease] = body as [number, string, string, number]
    // The limiter of the moment: a TOML reload may have swapped it (held tickets release on theirs).
    const limiter = current()
    if (wantLease === 1) {
      const block = leaseBlock(limiter.profile(profile), workers())
      const got = block === undefined ? undefined : limiter.lease(ip, profile, block.slots, block.tokens)
      if (got !== undefined) {
        record(limiter, ip, profile, got.slots, got.tokens)
        return { go: true, lease: [got.slots, got.tokens] }
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
  // A worker renewing the tokens of its lease: reports those it used, gets a block of tokens (or 0).
  worker.handle('rl.lease', (body) => {
    const [ip, profile, used] = body as [string, string, number]
    settleLease(ip, profile, 0, used, 0)
    const limiter = current()
    const block = leaseBlock(limiter.profile(profile), workers())
    const got = block === undefined ? undefined : limiter.lease(ip, profile, 0, block.tokens)
    if (got === undefined || got.tokens === 0) return 0
    record(limiter, ip, profile, 0, got.tokens)
    return got.tokens
  })
  worker.handle('rl.return', (body) => {
    const [ip, profile, slots, used, unused] = body as [string, string, number, number, number]
    settleLease(ip, profile, slots, used, unused)
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
      // Its tokens count as used (it may have used them and not said so yet).
      for (const [key, list] of leased) {
        const cut = key.indexOf(' ')
        for (const l of list) l.limiter.giveBack(key.slice(cut + 1), key.slice(0, cut), l.slots, l.tokens, 0)
      }
      leased.clear()
    }
  }
}
