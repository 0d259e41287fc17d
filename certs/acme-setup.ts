/**
 * @module certs/acme-setup
 * Brings ACME up: loads the stored certificates, then the account key (created when missing).
 * A failure (a full disk, a file where a folder should be, permissions) is never fatal: serving
 * goes on with what is loaded (user certificates, the self-signed fallback), the failed steps are
 * retried with exponential backoff, each failure is logged with its reason in words, and
 * status() shows it. No order is placed before it succeeds: an account key we cannot keep would
 * make a new CA account at every restart.
 */
import type { AcmeStatus } from './types.ts'
import type { ManagerContext } from './domain-state.ts'
import { CertError, describeError } from './errors.ts'
import { backoffDelay } from './schedule.ts'

/** The failures are local (storage), not the CA's: retry sooner than orders, but back off all the same. */
const RETRY_BASE_MS = 1000
const RETRY_MAX_MS = 5 * 60_000


/** One step of the set-up; it rejects with a worded error. */
export interface SetupStep {
  readonly name: string
  run (): Promise<void>
}

/** The set-up's controls. */
export interface AcmeSetup {
  /** Runs the first attempt; resolves once it settled (ready, or a retry scheduled). Never rejects. */
  start (): Promise<void>
  stop (): void
  ready (): boolean
  status (): AcmeStatus
  /** Why orders cannot run now (CERTS_ACME_UNAVAILABLE), or undefined when ready. */
  unavailable (domain: string): CertError | undefined
}

/**
 * Creates the set-up over `steps`, run in order; a step that succeeded is not run again.
 * `onReady` runs once, when every step has succeeded.
 */
export function createAcmeSetup (ctx: ManagerContext, steps: readonly SetupStep[], onReady: () => void): AcmeSetup {
  const done = new Set<string>()
  let failures = 0
  let lastError: Error | undefined
  let lastErrorAt: Date | undefined
  let retryAt = 0
  let timer: NodeJS.Timeout | undefined
  let isReady = false
  let stopped = false

  async function attempt (): Promise<void> {
    timer = undefined
    for (const step of steps) {
      if (done.has(step.name) || stopped) continue
      try {
        await step.run()
        done.add(step.name)
      } catch (err) {
        failures++
        lastError = err instanceof Error ? err : new Error(describeError(err))
        lastErrorAt = new Date()
        const delay = backoffDelay(failures, Math.min(RETRY_BASE_MS, ctx.opts.backoffBaseMs), Math.min(RETRY_MAX_MS, ctx.opts.backoffMaxMs), ctx.random())
        retryAt = Date.now() + delay
        ctx.log.error('ACME unavailable: serving without it, retrying', {
          step: step.name, reason: describeError(lastError), failures, retryAt: new Date(retryAt).toISOString(), err: lastError
        })
        if (!stopped) {
          timer = setTimeout(() => { void attempt() }, delay)
          timer.unref()
        }
        return
      }
    }
    if (stopped) return
    if (failures > 0) ctx.log.info('ACME available again', { after_failures: failures })
    failures = 0
    lastError = undefined
    lastErrorAt = undefined
    retryAt = 0
    isReady = true
    onReady()
  }

  return {
    start: attempt,
    stop () {
      stopped = true
      if (timer !== undefined) clearTimeout(timer)
      timer = undefined
    },
    ready: () => isReady,
    status () {
      return {
        enabled: true,
        ready: isReady,
        failures,
        ...(lastError === undefined ? {} : { lastError: describeError(lastError), lastErrorAt: lastErrorAt?.toISOString() }),
        ...(retryAt > Date.now() ? { retryAt: new Date(retryAt).toISOString() } : {})
      }
    },
    unavailable (domain) {
      if (isReady) return undefined
      const why = lastError === undefined ? 'still starting' : describeError(lastError)
      const when = retryAt > 0 ? `; next attempt at ${new Date(retryAt).toISOString()}` : ''
      return new CertError('CERTS_ACME_UNAVAILABLE', `ACME is not available, no certificate for ${domain} yet: ${why}${when}`, {
        domain, cause: lastError, ...(retryAt > 0 ? { retryAt: new Date(retryAt) } : {})
      })
    }
  }
}
