/**
 * @module certs/schedule
 * Pure timing rules: when a certificate is due for renewal (a share of its own lifetime, with
 * jitter) and how long a domain backs off after failed orders (exponential, jittered, capped).
 */

/** Renewal jitter: up to this share of the lifetime earlier than the nominal time, at most 6 h. */
const JITTER_SHARE = 0.05
const JITTER_MAX_MS = 6 * 3600_000

/**
 * When to renew a certificate valid from `notBefore` to `notAfter`: once `ratio` of its lifetime
 * remains (certmagic's renewal window ratio), moved earlier by a random jitter so that many
 * certificates issued together do not renew in the same second. Read from the certificate, never
 * assumed to be 90 days.
 * @param random a number in [0, 1)
 */
export function renewalTime (notBefore: Date, notAfter: Date, ratio: number, random: number): Date {
  const lifetime = Math.max(0, notAfter.getTime() - notBefore.getTime())
  const nominal = notAfter.getTime() - lifetime * ratio
  const jitter = Math.min(lifetime * JITTER_SHARE, JITTER_MAX_MS) * random
  return new Date(Math.max(notBefore.getTime(), nominal - jitter))
}

/**
 * Delay before the next attempt after `failures` consecutive failed orders (1 = the first
 * failure): base·2^(failures-1), capped at `max`, then jittered down to between 50% and 100% so
 * failing domains do not retry in lockstep. Never below 1 ms.
 * @param random a number in [0, 1)
 */
export function backoffDelay (failures: number, baseMs: number, maxMs: number, random: number): number {
  const exp = Math.min(maxMs, baseMs * 2 ** Math.max(0, Math.min(failures - 1, 40)))
  return Math.max(1, Math.round(exp * (0.5 + random / 2)))
}
