/**
 * @module certs/maintain
 * The background renewal loop: on every pass, for each ACME-managed domain the policy still
 * allows, refresh the CA's renewal window (ARI) when due, and order a certificate when the
 * current one is due (or missing, e.g. after a corrupt file was moved aside). It then sleeps
 * until the next domain is due (SPEC §14: a 2-minute certificate renews when 40 s remain), at
 * most the regular interval, and wakes earlier when a settled order plans something sooner.
 * Timers are unref'd.
 */
import { ARI_DEFAULT_RECHECK_MS, pickRenewalTime } from './ari.ts'
import type { CachedCert } from './cache.ts'
import type { DomainState, ManagerContext } from './domain-state.ts'
import type { OrderRunner } from './orders.ts'

const FIRST_TICK_MAX_DELAY_MS = 10_000
/** The shortest sleep before a pass, whatever is due: nothing overdue can make the loop spin. */
const MIN_SLEEP_MS = 250

/** The loop's controls. */
export interface Maintenance {
  start (): void
  stop (): void
  /** One pass (exposed for tests and for a manual "check now"). Never rejects. */
  tick (): Promise<void>
}

/** Creates the loop; nothing runs until `start()`. */
export function createMaintenance (ctx: ManagerContext, runner: OrderRunner): Maintenance {
  let timer: NodeJS.Timeout | undefined
  /** When the armed timer fires (epoch ms). */
  let wakeAt = Infinity
  /** A wake asked for while a pass runs; the pass arms it when it ends. */
  let pendingWake = Infinity
  let running = false
  let started = false

  async function refreshAri (domain: string, st: DomainState, cert: CachedCert, now: number): Promise<void> {
    const certId = cert.info.ariCertId
    if (ctx.issuer === undefined || certId === undefined || st.ariCheckAt > now) return
    try {
      const window = await ctx.issuer.renewalInfo(certId)
      if (window === undefined) {
        st.ariCheckAt = now + ARI_DEFAULT_RECHECK_MS // the CA offers no ARI (yet): look again later
        return
      }
      const changed = st.ariWindow === undefined || st.ariWindow.start.getTime() !== window.start.getTime() || st.ariWindow.end.getTime() !== window.end.getTime()
      st.ariWindow = window
      st.ariCheckAt = now + window.recheckMs
      if (changed) {
        // A new window gets a new random point; an unchanged one keeps it (no drift on re-checks).
        const at = pickRenewalTime(window, ctx.random())
        st.renewAt = at.getTime() < cert.info.notAfter.getTime() ? at : cert.info.notAfter
        ctx.log.info('renewal window from the CA', { domain, start: window.start.toISOString(), end: window.end.toISOString(), renewAt: st.renewAt.toISOString(), explanation: window.explanationUrl })
      }
    } catch (err) {
      // Keep the lifetime-based plan; ask again after the backoff cap.
      st.ariCheckAt = now + ctx.opts.backoffMaxMs
      ctx.log.warn('renewal information unavailable, keeping the lifetime-based renewal time', { domain, err })
    }
  }

  /**
   * One pass over every managed domain; returns when the next one is due (epoch ms, Infinity
   * when none is): its renewal time, the end of its backoff, its next ARI lookup, or the expiry
   * of the certificate that keeps it from being renewed. Domains left with an order running are
   * left out: the order re-arms the loop when it settles.
   */
  async function tick (): Promise<number> {
    let next = Infinity
    const due = (at: number): void => { next = Math.min(next, at) }
    for (const [domain, st] of [...ctx.domains]) {
      if (ctx.stopped()) return next
      const now = Date.now()
      if (runner.running(domain)) continue
      const extra = ctx.cache.lookupExtra(domain, now)
      if (extra !== undefined) { // a user certificate serves it, until it expires
        due(extra.info.notAfter.getTime())
        continue
      }
      const cert = ctx.cache.acme.get(domain)
      if (!ctx.allowed(domain)) {
        // No longer routed: keep serving what we have until it expires, but never renew it.
        // Once expired it is dropped from memory (its expiry series disappears from metrics);
        // the files stay, and a VM that comes back gets a fresh certificate at its first handshake.
        if (cert === undefined) {
          ctx.domains.delete(domain)
        } else if (now >= cert.info.notAfter.getTime()) {
          ctx.changeCertificates([domain], () => { ctx.cache.acme.delete(domain) })
          ctx.domains.delete(domain)
          ctx.log.info('expired certificate of a domain no longer allowed dropped from memory', { domain })
        } else {
          due(cert.info.notAfter.getTime())
        }
        continue
      }
      if (st.retryAt > now) {
        due(st.retryAt)
        continue
      }
      if (cert === undefined) {
        void runner.run(domain, 'missing')
        continue
      }
      await refreshAri(domain, st, cert, now)
      const at = Date.now()
      if (st.renewAt === undefined || at >= st.renewAt.getTime()) {
        void runner.run(domain, at >= cert.info.notAfter.getTime() ? 'expired' : 'renewal')
        continue
      }
      due(st.renewAt.getTime())
      if (cert.info.ariCertId !== undefined) due(st.ariCheckAt)
    }
    return next
  }

  /** When `domain` is next due from its own plan alone (after its order settled). */
  function plannedAt (domain: string): number {
    const st = ctx.domains.get(domain)
    if (st === undefined) return Infinity
    if (st.retryAt > Date.now()) return st.retryAt
    return st.renewAt?.getTime() ?? Date.now()
  }

  async function loop (): Promise<void> {
    running = true
    let next = Infinity
    try {
      next = await tick()
    } catch (err) {
      ctx.log.error('certificate maintenance failed', { err })
    } finally {
      running = false
    }
    next = Math.min(next, pendingWake)
    pendingWake = Infinity
    arm(next)
  }

  /**
   * Sleeps until `at`, but at least MIN_SLEEP_MS and at most the regular interval (which also
   * catches what nothing announces: a domain leaving the route table). Keeps an earlier wake.
   */
  function arm (at: number): void {
    if (!started || ctx.stopped()) return
    if (running) { // the pass in progress arms when it ends
      pendingWake = Math.min(pendingWake, at)
      return
    }
    const now = Date.now()
    const interval = ctx.opts.maintenanceIntervalMs
    const delay = Math.min(interval, Math.max(Math.min(MIN_SLEEP_MS, interval), at - now))
    if (timer !== undefined && wakeAt <= now + delay) return
    if (timer !== undefined) clearTimeout(timer)
    wakeAt = now + delay
    timer = setTimeout(() => {
      timer = undefined
      wakeAt = Infinity
      void loop()
    }, delay)
    timer.unref()
  }

  // An order changes its domain's plan (new certificate, or backoff): wake for it if sooner.
  runner.onSettled((domain) => { arm(plannedAt(domain)) })

  return {
    start () {
      if (started) return
      started = true
      // The first pass waits a little (at most 10 s) so the host can load what its policy reads
      // (the route table) first, unless a stored certificate is due sooner; handshakes are served
      // and trigger orders meanwhile.
      let first = Date.now() + FIRST_TICK_MAX_DELAY_MS
      for (const domain of ctx.domains.keys()) first = Math.min(first, plannedAt(domain))
      arm(first)
    },
    stop () {
      started = false
      if (timer !== undefined) clearTimeout(timer)
      timer = undefined
      wakeAt = Infinity
    },
    async tick () {
      await tick()
    }
  }
}
