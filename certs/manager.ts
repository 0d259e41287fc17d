/**
 * @module certs/manager
 * createCertManager: assembles cache, storage, issuer, order runner and renewal loop behind the
 * CertManager API, and implements the handshake path (cache only, self-signed fallback, on-demand
 * orders in the background).
 */
import { EventEmitter } from 'node:events'
import { randomInt } from 'node:crypto'
import { createAcmeIssuer } from './acme-issuer.ts'
import { createAcmeSetup } from './acme-setup.ts'
import { type CachedCert, createCachedCert, createCertCache } from './cache.ts'
import { type CertManagerOptions, resolveCertOptions } from './config.ts'
import { diffServed, type ManagerContext, stateOf } from './domain-state.ts'
import { CertError, describeError } from './errors.ts'
import { loadExtraCerts } from './extra-certs.ts'
import { createFileStorage } from './file-storage.ts'
import { createChallengeStore } from './http01.ts'
import { createMaintenance } from './maintain.ts'
import { createOrderRunner } from './orders.ts'
import { renewalTime } from './schedule.ts'
import { createSelfSignedFallback } from './self-signed.ts'
import { createSiteStore } from './site-store.ts'
import { issuerKeyFromUrl, storageKeys } from './storage.ts'
import type { CertificateEvent, CertManager, CertStatus, OrderEvent } from './types.ts'

const HOSTNAME = /^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?\.)*[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?$/

/**
 * A name fit for lookups, policy and storage: lower-case, no trailing dot, a syntactically valid
 * DNS name that is not an IP address; `undefined` otherwise.
 */
export function normalizeServerName (name: string | undefined): string | undefined {
  if (typeof name !== 'string') return undefined
  const n = name.toLowerCase().replace(/\.$/, '')
  if (!HOSTNAME.test(n) || /^[0-9.]+$/.test(n)) return undefined
  return n
}

/**
 * Creates a certificate manager. Construction validates the options (throws CertError
 * CERTS_CONFIG_INVALID), reads `acme.caFile` and makes the self-signed fallback; nothing else
 * happens until `start()`.
 * @example
 * const certs = createCertManager({ storageDir: '/var/lib/vmfront', policy: (d) => router.has(d),
 *   acme: { enabled: true, directoryUrl: 'letsencrypt-staging', email: 'ops@example.com' } })
 * await certs.start()
 * http2.createSecureServer({ allowHTTP1: true, ...certs.defaultSecureContextOptions(), SNICallback: certs.sniCallback })
 */
export function createCertManager (options: CertManagerOptions): CertManager {
  const opts = resolveCertOptions(options)
  const log = opts.logger
  const policy = options.policy
  const storage = options.storage ?? createFileStorage(opts.storageDir)
  const challenges = options.challenges ?? createChallengeStore()
  const issuerKey = options.issuer?.key ?? issuerKeyFromUrl(opts.acme.directoryUrl)
  const keys = storageKeys(issuerKey)
  const issuer = !opts.acme.enabled
    ? undefined
    : options.issuer ?? createAcmeIssuer({
      directoryUrl: opts.acme.directoryUrl,
      issuerKey,
      email: opts.acme.email,
      caPem: opts.acme.caPem,
      profile: opts.acme.profile,
      keyType: opts.keyType,
      storage,
      keys,
      challenges,
      logger: log,
      pollMinMs: opts.acmePollMinMs,
      pollMaxMs: opts.acmePollMaxMs,
      pollAttempts: opts.acmePollAttempts,
      httpTimeoutMs: opts.acmeHttpTimeoutMs
    })
  const cache = createCertCache()
  // Given (a proxy's workers share their primary's, SPEC §12), or made here once.
  const fallback = options.fallback === undefined ? createSelfSignedFallback() : createCachedCert('self-signed', options.fallback.cert, options.fallback.key)
  const events = new EventEmitter()
  let started = false
  let stopped = false

  function emit (name: 'order' | 'certificate', event: OrderEvent | CertificateEvent): void {
    try {
      events.emit(name, event)
    } catch (err) {
      log.error('certificate event listener threw', { event: name, err })
    }
  }

  const ctx: ManagerContext = {
    opts,
    log,
    cache,
    issuer,
    sites: createSiteStore(storage, keys),
    domains: new Map(),
    allowed (domain) {
      try {
        return policy(domain) === true
      } catch (err) {
        log.error('certificate policy threw; treating the name as not allowed', { domain, err })
        return false
      }
    },
    stopped: () => stopped,
    random: () => randomInt(0, 2 ** 32) / 2 ** 32,
    changeCertificates (domains, mutate) {
      const now = Date.now()
      const before = new Map<string, CachedCert | undefined>()
      for (const d of domains) before.set(d, cache.lookup(d, now))
      mutate()
      diffServed(before, (d) => cache.lookup(d, now), (e) => { emit('certificate', e) })
    },
    emitOrder: (e) => { emit('order', e) }
  }
  const runner = createOrderRunner(ctx)
  const maintenance = createMaintenance(ctx, runner)

  /** Starts a background order for a handshake, unless one runs, the domain backs off, or the policy says no. */
  function orderOnDemand (name: string, hit: CachedCert | undefined, now: number): void {
    if (!started || stopped || issuer === undefined || !setup.ready() || runner.running(name)) return
    const st = ctx.domains.get(name)
    if (st !== undefined && st.retryAt > now) return
    if (!ctx.allowed(name)) return
    stateOf(ctx, name)
    const reason = hit === undefined ? 'on-demand' : now >= hit.info.notAfter.getTime() ? 'expired' : 'renewal'
    void runner.run(name, reason)
  }

  async function reloadExtra (): Promise<void> {
    const file = opts.extraCertsFile
    const next = file === undefined ? new Map<string, CachedCert>() : await loadExtraCerts(file)
    const affected = new Set([...cache.extraEntries().keys(), ...next.keys()])
    ctx.changeCertificates(affected, () => { cache.setExtra(next) })
    if (file !== undefined) log.info('extra certificates loaded', { file, domains: [...next.keys()] })
  }

  /** Serves the stored certificates; a retry after a partial failure adds only those not loaded yet. */
  async function loadStored (): Promise<void> {
    const { loaded, corrupt, unreadable } = await ctx.sites.loadAll()
    const fresh = [...loaded].filter(([domain]) => !cache.acme.has(domain))
    ctx.changeCertificates(fresh.map(([domain]) => domain), () => {
      for (const [domain, cert] of fresh) cache.acme.set(domain, cert)
    })
    for (const [domain, cert] of fresh) {
      stateOf(ctx, domain).renewAt = renewalTime(cert.info.notBefore, cert.info.notAfter, opts.renewRatio, ctx.random())
    }
    for (const { domain, error, asideError } of corrupt) {
      if (asideError === undefined) log.error('stored certificate is corrupt: moved aside, a new one will be ordered', { domain, err: error })
      else log.error('stored certificate is corrupt and could not be moved aside: a new one will replace it', { domain, err: error, reason: describeError(asideError) })
      const st = stateOf(ctx, domain)
      st.lastError = error
      st.lastErrorAt = new Date()
    }
    log.info('stored certificates loaded', { issuer: issuer?.key, loaded: fresh.length, corrupt: corrupt.length, unreadable: unreadable.length })
    if (unreadable.length > 0) {
      const more = unreadable.length > 1 ? ` (and ${unreadable.length - 1} more)` : ''
      throw new CertError('CERTS_STORAGE_FAILED', `${unreadable[0].message}${more}`, { cause: unreadable[0] })
    }
  }
  const setup = createAcmeSetup(ctx, [
    { name: 'stored certificates', run: loadStored },
    { name: 'account key', run: async () => { await issuer?.init() } }
  ], () => { if (!stopped) maintenance.start() })

  function statusRow (domain: string, now: number): CertStatus {
    const cert = cache.lookup(domain, now) ?? fallback
    const st = ctx.domains.get(domain)
    const iso = (d: Date | undefined): string | undefined => d?.toISOString()
    return {
      domain,
      source: cert.source,
      issuer: cert.info.issuer,
      serial: cert.info.serial,
      notBefore: cert.info.notBefore.toISOString(),
      notAfter: cert.info.notAfter.toISOString(),
      ...(cert.source === 'acme' && st?.renewAt !== undefined ? { renewAt: iso(st.renewAt) } : {}),
      ...(cert.source === 'acme' && st?.ariWindow !== undefined ? { ariWindow: { start: st.ariWindow.start.toISOString(), end: st.ariWindow.end.toISOString() } } : {}),
      ...(st?.lastError !== undefined ? { lastError: st.lastError.message, lastErrorAt: iso(st.lastErrorAt) } : {}),
      ...(st !== undefined && st.retryAt > now ? { retryAt: new Date(st.retryAt).toISOString() } : {})
    }
  }

  const manager: CertManager = {
    sniCallback (servername, cb) {
      const name = normalizeServerName(servername)
      if (name === undefined) {
        cb(null, fallback.context)
        return
      }
      const now = Date.now()
      const hit = cache.lookup(name, now)
      if (hit === undefined) {
        orderOnDemand(name, undefined, now)
      } else if (hit.source === 'acme') {
        // Due or expired (a VM back after months): renew now rather than wait for the next tick.
        const renewAt = ctx.domains.get(name)?.renewAt
        if (renewAt === undefined || now >= renewAt.getTime()) orderOnDemand(name, hit, now)
      }
      cb(null, (hit ?? fallback).context)
    },
    defaultSecureContextOptions: () => ({ key: fallback.keyPem, cert: fallback.chainPem }),
    handleHttpChallenge: (req, res) => challenges.handle(req, res),
    servedPem (domain) {
      const name = normalizeServerName(domain)
      const cert = name === undefined ? undefined : cache.lookup(name, Date.now())
      return cert === undefined ? undefined : { source: cert.source, chainPem: cert.chainPem, keyPem: cert.keyPem }
    },
    loadExtraCerts: reloadExtra,
    async ensure (domain) {
      const name = normalizeServerName(domain)
      if (name === undefined) throw new CertError('CERTS_DOMAIN_NOT_ALLOWED', `not a valid domain name: ${JSON.stringify(domain)}`, { domain })
      if (stopped || !started) throw new CertError('CERTS_STOPPED', stopped ? 'certificate manager stopped' : 'certificate manager not started', { domain: name })
      const now = Date.now()
      if (cache.lookupExtra(name, now) !== undefined) return
      const st = ctx.domains.get(name)
      const current = cache.acme.get(name)
      if (current !== undefined && st?.renewAt !== undefined && now < st.renewAt.getTime()) return
      if (issuer === undefined) throw new CertError('CERTS_ACME_DISABLED', `ACME is disabled; no certificate for ${name}`, { domain: name })
      if (!ctx.allowed(name)) throw new CertError('CERTS_DOMAIN_NOT_ALLOWED', `the policy does not allow a certificate for ${name}`, { domain: name })
      const unavailable = setup.unavailable(name)
      if (unavailable !== undefined) throw unavailable
      if (!runner.running(name) && st !== undefined && st.retryAt > now) {
        throw new CertError('CERTS_ORDER_BACKOFF', `${name}: backing off after ${st.failures} failed order(s) until ${new Date(st.retryAt).toISOString()}`, { domain: name, retryAt: new Date(st.retryAt), cause: st.lastError })
      }
      stateOf(ctx, name)
      const error = await runner.run(name, 'ensure')
      if (error !== undefined) throw error
    },
    async start () {
      if (started) return
      if (stopped) throw new CertError('CERTS_STOPPED', 'certificate manager stopped')
      await reloadExtra()
      // Never rejects: ACME problems (a full disk...) are retried in the background while serving.
      if (issuer !== undefined) await setup.start()
      started = true
    },
    async stop () {
      stopped = true
      setup.stop()
      maintenance.stop()
      await runner.settle()
      issuer?.close?.()
    },
    acmeStatus: () => issuer === undefined ? { enabled: false, ready: false, failures: 0 } : setup.status(),
    status () {
      const now = Date.now()
      const names = new Set([...cache.extraEntries().keys(), ...cache.acme.keys(), ...ctx.domains.keys()])
      return [...names].sort().map((d) => statusRow(d, now))
    },
    on (event: 'order' | 'certificate', fn: Parameters<EventEmitter['on']>[1]) {
      events.on(event, fn)
      return manager
    },
    off (event: 'order' | 'certificate', fn: Parameters<EventEmitter['off']>[1]) {
      events.off(event, fn)
      return manager
    }
  }
  return manager
}
