/**
 * @module certs/storage
 * The Storage contract and the one place storage keys are built (sanitised, no path traversal).
 */
import { CertError } from './errors.ts'

/**
 * Where certificates and the ACME account persist. Keys are `/`-separated relative paths built by
 * {@link storageKeys}. Implementations: file-storage.ts (production), memory-storage.ts (tests).
 *
 * Contract: `store` is atomic (a reader sees the old or the new value, never a partial one);
 * `load` resolves `undefined` for a missing key; `delete` of a missing key is not an error;
 * `list(prefix)` returns the names of the direct children of `prefix`, sorted, `[]` when absent.
 */
export interface Storage {
  load (key: string): Promise<Buffer | undefined>
  /** `secret: true` marks private keys (file mode 0600; every file is 0600 in file storage anyway). */
  store (key: string, data: string | Buffer, options?: { secret?: boolean }): Promise<void>
  delete (key: string): Promise<void>
  list (prefix: string): Promise<string[]>
}

const SAFE_PART = /^[a-z0-9_][a-z0-9._-]*$/

/**
 * Turns one name (a domain, an issuer key) into a single safe path segment. A leading wildcard
 * label becomes `wildcard_` (as certmagic does); anything that could leave the directory
 * (`..`, separators, NUL, empty, a leading dot) is rejected rather than silently stripped,
 * because a rewritten name could collide with another domain's files.
 * @throws CertError CERTS_STORAGE_KEY_INVALID
 */
export function safeKeyPart (name: string): string {
  const lower = name.toLowerCase().replace(/^\*\./, 'wildcard_.')
  if (lower.length === 0 || lower.length > 253 || lower.includes('..') || !SAFE_PART.test(lower)) {
    throw new CertError('CERTS_STORAGE_KEY_INVALID', `unsafe storage name ${JSON.stringify(name)}`)
  }
  return lower
}

/**
 * A stable, readable key for an ACME directory: host (and port) plus path, e.g.
 * `acme-staging-v02.api.letsencrypt.org-directory`, so staging and production certificates and
 * accounts never mix.
 */
export function issuerKeyFromUrl (directoryUrl: string): string {
  const url = new URL(directoryUrl)
  const raw = `${url.host}${url.pathname}`.toLowerCase().replace(/[^a-z0-9.-]+/g, '-').replace(/-+$/, '').replace(/\.\.+/g, '.')
  return safeKeyPart(raw)
}

/** The storage keys of one issuer (ACME directory). Every key goes through {@link safeKeyPart}. */
export interface StorageKeys {
  readonly accountKey: string
  readonly sitesPrefix: string
  siteCert (domain: string): string
  siteKey (domain: string): string
  siteMeta (domain: string): string
  /** Where a corrupt file is moved aside (kept for inspection, never loaded). */
  quarantine (key: string, at: Date): string
}

/** Builds the key layout: `acme/<issuer>/account.key`, `certs/<issuer>/<domain>/{cert.pem,key.pem,meta.json}`. */
export function storageKeys (issuerKey: string): StorageKeys {
  const issuer = safeKeyPart(issuerKey)
  const site = (domain: string): string => `certs/${issuer}/${safeKeyPart(domain)}`
  return {
    accountKey: `acme/${issuer}/account.key`,
    sitesPrefix: `certs/${issuer}`,
    siteCert: (domain) => `${site(domain)}/cert.pem`,
    siteKey: (domain) => `${site(domain)}/key.pem`,
    siteMeta: (domain) => `${site(domain)}/meta.json`,
    quarantine: (key, at) => `${key}.corrupt-${at.toISOString().replace(/[:.]/g, '-').toLowerCase()}`
  }
}
