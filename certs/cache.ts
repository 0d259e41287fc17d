/**
 * @module certs/cache
 * The in-memory certificate cache the TLS handshake reads: ready tls.SecureContext objects, user
 * certificates first (exact name, then `*.` wildcard), then ACME certificates.
 */
import { createSecureContext, type SecureContext } from 'node:tls'
import { CertError } from './errors.ts'
import { keyMatchesCertificate, parseCertificateChain, type CertInfo } from './x509.ts'

/** Where a served certificate comes from. */
export type CertSource = 'extra' | 'acme' | 'self-signed'

/** A certificate ready to serve. Immutable: replacing a certificate swaps the whole entry. */
export interface CachedCert {
  readonly source: CertSource
  readonly context: SecureContext
  readonly info: CertInfo
  readonly chainPem: string
  readonly keyPem: string
}

/**
 * Parses and checks a chain and key, and builds the secure context once (never per handshake).
 * @throws CertError CERTS_PEM_INVALID when either does not parse or the key does not match
 */
export function createCachedCert (source: CertSource, chainPem: string, keyPem: string): CachedCert {
  const chain = parseCertificateChain(chainPem)
  if (!keyMatchesCertificate(chain.leaf, keyPem)) throw new CertError('CERTS_PEM_INVALID', 'private key does not match the certificate')
  let context: SecureContext
  try {
    context = createSecureContext({ cert: chain.chainPem, key: keyPem })
  } catch (err) {
    throw new CertError('CERTS_PEM_INVALID', `cannot build a TLS context: ${(err as Error).message}`, { cause: err })
  }
  return Object.freeze({ source, context, info: chain.info, chainPem: chain.chainPem, keyPem })
}

/** The two certificate sets and the lookup over them. */
export interface CertCache {
  /** User certificate for `name` valid at `now` (exact, then wildcard), else the ACME one (even expired). */
  lookup (name: string, now: number): CachedCert | undefined
  /** The user certificate serving `name` at `now`, if any. */
  lookupExtra (name: string, now: number): CachedCert | undefined
  /** Replaces the whole user set in one assignment (a reload never shows a half-built set). */
  setExtra (entries: ReadonlyMap<string, CachedCert>): void
  extraEntries (): ReadonlyMap<string, CachedCert>
  /** ACME certificates by domain. */
  readonly acme: Map<string, CachedCert>
}

/** Creates an empty cache. */
export function createCertCache (): CertCache {
  let extra: ReadonlyMap<string, CachedCert> = new Map()
  const acme = new Map<string, CachedCert>()

  function lookupExtra (name: string, now: number): CachedCert | undefined {
    let hit = extra.get(name)
    if (hit === undefined) {
      const dot = name.indexOf('.')
      if (dot > 0) hit = extra.get('*' + name.slice(dot))
    }
    // An expired user certificate is skipped so ACME (or the fallback) can take over.
    return hit !== undefined && hit.info.notAfter.getTime() > now ? hit : undefined
  }

  return {
    lookup: (name, now) => lookupExtra(name, now) ?? acme.get(name),
    lookupExtra,
    setExtra (entries) { extra = entries },
    extraEntries: () => extra,
    acme
  }
}
