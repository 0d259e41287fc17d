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
 */
import { ABORTED, UNLIMITED, type Admission, type RateLimiter, type Refusal, type Ticket, type Verdict, type Wait } from './rate-limit.ts'
import { isUnlimited, DEFAULT_PROFILE_NAME, type RateProfile } from './rate-profile.ts'
import type { IpcPeer } from './worker-ipc.ts'

type Answer = { go: true } | { refuse: Refusal['reason'], retryAfterSec: number } | { aborted: true }

/** Worker side: a RateLimiter whose decisions the primary makes. */
export function createRemoteRateLimiter (profiles: readonly RateProfile[], primary: IpcPeer): RateLimiter {
  const byName = new Map(profiles.map((p) => [p.name, p]))
  const fallback = byName.get(DEFAULT_PROFILE_NAME) ?? { name: DEFAULT_PROFILE_NAME } as RateProfile
  const profileOf = (name: string): RateProfile => byName.get(name) ?? fallback
  let nextId = 1
  return {
    admit (ip, profileName, signal): Admission {
      const profile = profileOf(profileName)
      if (byName.get(profile.name) === undefined || isUnlimited(profile)) return UNLIMITED
      const id = nextId++
      let settled: Verdict | undefined
      let ended = false
      const end = (): void => {
        if (ended) return
        ended = true
        primary.notify('rl.end', id)
      }
      const ticket: Ticket = { kind: 'go', release: end }
      const promise = primary.request<Answer>('rl.admit', { id, ip, profile: profile.name }).then((a): Verdict => {
        if (ended) return ABORTED
        if ('go' in a) settled = ticket
        else if ('refuse' in a) { ended = true; settled = { kind: 'refuse', reason: a.refuse, retryAfterSec: a.retryAfterSec } } else { ended = true; settled = ABORTED }
        return settled
      }, (): Verdict => {
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
    close () {}
  }
}

/** Primary side: answers one worker's limiter; `release()` ends everything it holds (it died). */
export function serveRateLimits (current: () => RateLimiter, worker: IpcPeer): { release: () => void } {
  // Per id: what to call when the worker says the request ended (release a ticket, cancel a wait).
  const held = new Map<number, () => void>()
  worker.handle('rl.admit', (body) => {
    const { id, ip, profile } = body as { id: number, ip: string, profile: string }
    // The limiter of the moment: a TOML reload may have swapped it (held tickets release on theirs).
    const a = current().admit(ip, profile)
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
    }
  }
}
