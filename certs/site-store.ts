/**
 * @module certs/site-store
 * Persists ACME certificates through Storage (`certs/<issuer>/<domain>/{cert.pem,key.pem,meta.json}`)
 * and loads them back at start, moving corrupt ones aside instead of failing.
 */
import { createCachedCert, type CachedCert } from './cache.ts'
import { CertError, errorMessage, storageFailureParts } from './errors.ts'
import type { IssuedCertificate } from './issuer.ts'
import { safeKeyPart, type Storage, type StorageKeys } from './storage.ts'
import { certCoversName } from './x509.ts'

/** A stored certificate that could not be used, and why. */
export interface CorruptSite {
  readonly domain: string
  readonly error: CertError
  /** Why it could not be moved aside (e.g. disk full); it stays in place and is overwritten by the next order. */
  readonly asideError?: Error
}

/** What loadAll found. */
export interface LoadedSites {
  loaded: Map<string, CachedCert>
  corrupt: CorruptSite[]
  /** Stored certificates that could not be read (permissions, I/O): neither served nor replaced. */
  unreadable: CertError[]
}

/** Load and save of one issuer's certificates. */
export interface SiteStore {
  /** Writes key, then chain, then meta, each atomically. A crash in between leaves a mismatch that load() reports and replaces. */
  save (domain: string, issued: IssuedCertificate, cert: CachedCert): Promise<void>
  /**
   * Every stored certificate, checked; corrupt ones are moved aside (`*.corrupt-<time>`, best
   * effort) and listed, unreadable ones listed apart. Rejects (CERTS_STORAGE_FAILED) only when
   * the folder itself cannot be listed.
   */
  loadAll (): Promise<LoadedSites>
}

function isSafeName (domain: string): boolean {
  try {
    safeKeyPart(domain)
    return true
  } catch {
    return false
  }
}

/** Creates the store over `storage` with the key layout `keys`. */
export function createSiteStore (storage: Storage, keys: StorageKeys): SiteStore {
  async function quarantine (key: string, now: Date): Promise<void> {
    const data = await storage.load(key)
    if (data === undefined) return
    await storage.store(keys.quarantine(key, now), data, { secret: true })
    await storage.delete(key)
  }

  async function loadOne (domain: string): Promise<CachedCert | undefined> {
    const [chain, key] = await Promise.all([storage.load(keys.siteCert(domain)), storage.load(keys.siteKey(domain))])
    if (chain === undefined && key === undefined) return undefined
    if (chain === undefined || key === undefined) {
      throw new CertError('CERTS_STORAGE_CORRUPT', `stored certificate for ${domain} is missing its ${chain === undefined ? 'cert.pem' : 'key.pem'}`, { domain })
    }
    let cert: CachedCert
    try {
      cert = createCachedCert('acme', chain.toString(), key.toString())
    } catch (err) {
      throw new CertError('CERTS_STORAGE_CORRUPT', `stored certificate for ${domain} is unusable: ${errorMessage(err)}`, { cause: err, domain })
    }
    if (!certCoversName(cert.info.dnsNames, domain)) {
      throw new CertError('CERTS_STORAGE_CORRUPT', `stored certificate for ${domain} does not cover it`, { domain })
    }
    return cert
  }

  return {
    async save (domain, issued, cert) {
      await storage.store(keys.siteKey(domain), issued.keyPem, { secret: true })
      await storage.store(keys.siteCert(domain), cert.chainPem)
      await storage.store(keys.siteMeta(domain), JSON.stringify({
        domain,
        serial: cert.info.serial,
        issuer: cert.info.issuer,
        notBefore: cert.info.notBefore.toISOString(),
        notAfter: cert.info.notAfter.toISOString(),
        storedAt: new Date().toISOString()
      }, null, 2) + '\n')
    },
    async loadAll () {
      const loaded = new Map<string, CachedCert>()
      const corrupt: CorruptSite[] = []
      const unreadable: CertError[] = []
      let names: string[]
      try {
        names = await storage.list(keys.sitesPrefix)
      } catch (err) {
        const { where, reason } = storageFailureParts(err, keys.sitesPrefix)
        throw new CertError('CERTS_STORAGE_FAILED', `cannot list the stored certificates in ${where}: ${reason}`, { cause: err, file: where })
      }
      for (const name of names) {
        const domain = name.replace(/^wildcard_\./, '*.')
        if (!isSafeName(domain)) continue // not a folder this store wrote: leave it alone
        try {
          const cert = await loadOne(domain)
          if (cert !== undefined) loaded.set(domain, cert)
        } catch (err) {
          if (err instanceof CertError && err.code === 'CERTS_STORAGE_FAILED') {
            // Unreadable is not corrupt: moving it aside would lose a good certificate.
            const { where, reason } = storageFailureParts(err, domain)
            unreadable.push(new CertError('CERTS_STORAGE_FAILED', `cannot read the stored certificate of ${domain} at ${where}: ${reason}`, { cause: err, domain, file: where }))
            continue
          }
          const error = err instanceof CertError ? err : new CertError('CERTS_STORAGE_CORRUPT', `stored certificate for ${domain}: ${errorMessage(err)}`, { cause: err, domain })
          const now = new Date()
          try {
            await quarantine(keys.siteCert(domain), now)
            await quarantine(keys.siteKey(domain), now)
            corrupt.push({ domain, error })
          } catch (asideError) {
            corrupt.push({ domain, error, asideError: asideError as Error })
          }
        }
      }
      return { loaded, corrupt, unreadable }
    }
  }
}
