/**
 * @module certs/orders
 * Runs ACME orders: one at a time per domain (a second request joins the running one), at most
 * `maxConcurrentOrders` overall, with per-domain exponential backoff after failures. A failed
 * renewal never touches the certificate being served.
 */
import { createCachedCert } from './cache.ts'
import { type ManagerContext, stateOf } from './domain-state.ts'
import { CertError, errorMessage } from './errors.ts'
import { backoffDelay, renewalTime } from './schedule.ts'
import type { OrderReason } from './types.ts'
import { certCoversName } from './x509.ts'

/** The order queue of one manager. */
export interface OrderRunner {
  /**
   * Orders a certificate for `domain` unless one is already being ordered, in which case it
   * returns that order's promise. Never rejects: resolves `undefined` on success, the error on failure.
   */
  run (domain: string, reason: OrderReason): Promise<Error | undefined>
  running (domain: string): boolean
  /** Waits for every running order to settle. */
  settle (): Promise<void>
  /** Calls `fn` after each order settles (its renewal plan or backoff is then up to date). */
  onSettled (fn: (domain: string) => void): void
}

/** Creates the runner over the manager's shared context. */
export function createOrderRunner (ctx: ManagerContext): OrderRunner {
  const inflight = new Map<string, Promise<Error | undefined>>()
  const settledListeners: Array<(domain: string) => void> = []
  const waiting: Array<() => void> = []
  let active = 0

  async function acquire (): Promise<void> {
    if (active < ctx.opts.maxConcurrentOrders) {
      active++
      return
    }
    await new Promise<void>((resolve) => { waiting.push(resolve) })
  }
  function release (): void {
    const next = waiting.shift()
    if (next !== undefined) next() // the slot passes straight to the next order
    else active--
  }

  async function order (domain: string, reason: OrderReason): Promise<Error | undefined> {
    const st = stateOf(ctx, domain)
    await acquire()
    try {
      if (ctx.stopped()) return new CertError('CERTS_STOPPED', 'certificate manager stopped', { domain })
      if (ctx.issuer === undefined) return new CertError('CERTS_ACME_DISABLED', 'ACME is disabled', { domain })
      const current = ctx.cache.acme.get(domain)
      const replaces = reason === 'on-demand' || reason === 'missing' ? undefined : current?.info.ariCertId
      const started = Date.now()
      ctx.log.info('ordering certificate', { domain, reason, ...(replaces === undefined ? {} : { replaces }) })
      const issued = await ctx.issuer.issue({ domain, ...(replaces === undefined ? {} : { replaces }) })
      let cert
      try {
        cert = createCachedCert('acme', issued.chainPem, issued.keyPem)
      } catch (err) {
        throw new CertError('CERTS_ORDER_FAILED', `the CA returned an unusable certificate for ${domain}: ${errorMessage(err)}`, { cause: err, domain })
      }
      if (!certCoversName(cert.info.dnsNames, domain)) {
        throw new CertError('CERTS_ORDER_FAILED', `the CA returned a certificate that does not cover ${domain}`, { domain })
      }
      try {
        await ctx.sites.save(domain, issued, cert)
      } catch (err) {
        // Serve it anyway: losing it at the next restart costs one order, refusing it costs an outage.
        ctx.log.error('storing the new certificate failed; serving it from memory', { domain, err })
      }
      ctx.changeCertificates([domain], () => { ctx.cache.acme.set(domain, cert) })
      st.renewAt = renewalTime(cert.info.notBefore, cert.info.notAfter, ctx.opts.renewRatio, ctx.random())
      st.ariCheckAt = 0
      st.ariWindow = undefined
      st.failures = 0
      st.retryAt = 0
      st.lastError = undefined
      st.lastErrorAt = undefined
      ctx.log.info('certificate issued', {
        domain, reason, serial: cert.info.serial, notAfter: cert.info.notAfter.toISOString(), renewAt: st.renewAt.toISOString(), ms: Date.now() - started
      })
      ctx.emitOrder({ domain, result: 'success', reason })
      return undefined
    } catch (err) {
      const error = err instanceof CertError ? err : new CertError('CERTS_ORDER_FAILED', `ordering a certificate for ${domain}: ${errorMessage(err)}`, { cause: err, domain })
      st.failures++
      const delay = backoffDelay(st.failures, ctx.opts.backoffBaseMs, ctx.opts.backoffMaxMs, ctx.random())
      st.retryAt = Date.now() + delay
      st.lastError = error
      st.lastErrorAt = new Date()
      ctx.log.error('certificate order failed', {
        domain, reason, failures: st.failures, retryAt: new Date(st.retryAt).toISOString(), servingPrevious: ctx.cache.acme.has(domain), err: error
      })
      ctx.emitOrder({ domain, result: 'failure', reason, error })
      return error
    } finally {
      release()
    }
  }

  return {
    run (domain, reason) {
      const existing = inflight.get(domain)
      if (existing !== undefined) return existing
      const p = order(domain, reason).finally(() => {
        inflight.delete(domain)
        for (const fn of settledListeners) {
          try {
            fn(domain)
          } catch (err) {
            ctx.log.error('order settle listener threw', { domain, err })
          }
        }
      })
      inflight.set(domain, p)
      return p
    },
    running: (domain) => inflight.has(domain),
    async settle () {
      await Promise.allSettled([...inflight.values()])
    },
    onSettled (fn) {
      settledListeners.push(fn)
    }
  }
}
