/**
 * @module certs/maintain
 * The background renewal loop: on every tick, for each ACME-managed domain the policy still
 * allows, refresh the CA's renewal window (ARI) when due, and order a certificate when the
 * current one is due (or missing, e.g. after a corrupt file was moved aside). Timers are unref'd.
 */
import { ARI_DEFAULT_RECHECK_MS, pickRenewalTime } from './ari.ts'
import type { CachedCert } from './cache.ts'
import type { DomainState, ManagerContext } from './domain-state.ts'
import type { OrderRunner } from './orders.ts'

const FIRST_TICK_MAX_DELAY_MS = 10_000

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
  let running = false

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

  async function tick (): Promise<void> {
    for (const [domain, st] of [...ctx.domains]) {
      if (ctx.stopped()) return
      const now = Date.now()
      if (runner.running(domain)) continue
      if (ctx.cache.lookupExtra(domain, now) !== undefined) continue // a user certificate serves it
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
        }
        continue
      }
      if (st.retryAt > now) continue
      if (cert === undefined) {
        void runner.run(domain, 'missing')
        continue
      }
      await refreshAri(domain, st, cert, now)
      const at = Date.now()
      if (st.renewAt === undefined || at >= st.renewAt.getTime()) {
        void runner.run(domain, at >= cert.info.notAfter.getTime() ? 'expired' : 'renewal')
      }
    }
  }

  async function loop (): Promise<void> {
    running = true
    try {
      await tick()
    } catch (err) {
      ctx.log.error('certificate maintenance failed', { err })
    } finally {
      running = false
    }
    schedule(ctx.opts.maintenanceIntervalMs)
  }

  function schedule (ms: number): void {
    if (ctx.stopped()) return
    timer = setTimeout(() => { void loop() }, ms)
    timer.unref()
  }

  return {
    start () {
      // The first pass waits a little (at most 10 s) so the host can load what its policy reads
      // (the route table) first; handshakes are served and trigger orders meanwhile.
      if (timer === undefined && !running) schedule(Math.min(ctx.opts.maintenanceIntervalMs, FIRST_TICK_MAX_DELAY_MS))
    },
    stop () {
      if (timer !== undefined) clearTimeout(timer)
      timer = undefined
    },
    tick
  }
}
