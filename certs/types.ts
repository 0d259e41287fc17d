/**
 * @module certs/types
 * The public shapes of the CertManager: the manager itself, its events and its status rows.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { SecureContext } from 'node:tls'
import type { CertSource } from './cache.ts'

export type { CertSource }

/** ACME's own state, JSON-ready for /status. */
export interface AcmeStatus {
  readonly enabled: boolean
  /** True once stored certificates and the account key are loaded: orders may run. */
  readonly ready: boolean
  /** Consecutive failed attempts (0 when ready). */
  readonly failures: number
  /** Why ACME is not available, in words ("cannot write the ACME account key to /x: no space left on device"). */
  readonly lastError?: string
  readonly lastErrorAt?: string
  /** When the next attempt runs (ISO 8601). */
  readonly retryAt?: string
}

/** Emitted after every ACME order attempt (metrics: vmfront_acme_orders_total{result}). */
export interface OrderEvent {
  readonly domain: string
  readonly result: 'success' | 'failure'
  /** Why the order was placed. */
  readonly reason: OrderReason
  /** The failure (a CertError, usually CERTS_ORDER_FAILED with the CA's error as cause). */
  readonly error?: Error
}

/** What triggered an order. */
export type OrderReason = 'on-demand' | 'ensure' | 'renewal' | 'expired' | 'missing'

/**
 * Emitted whenever the certificate served for a domain changes: loaded at start, issued,
 * renewed, (re)loaded from extra_certs_file, or removed (metrics:
 * vmfront_certificate_expiry_timestamp_seconds{domain}; on `removed`, drop the series).
 */
export interface CertificateEvent {
  readonly domain: string
  /** Expiry of the certificate now served (of the removed one when `removed`). */
  readonly notAfter: Date
  readonly source: CertSource
  /** True when no real certificate serves the domain any more (it falls back to self-signed). */
  readonly removed: boolean
}

/** One row of status(), JSON-ready for /status. */
export interface CertStatus {
  readonly domain: string
  /** What a handshake for this name gets now. */
  readonly source: CertSource
  readonly issuer: string
  readonly serial: string
  /** ISO 8601. */
  readonly notBefore: string
  readonly notAfter: string
  /** ACME only: when the next renewal is planned (ISO 8601). */
  readonly renewAt?: string
  /** ACME only: the CA's ARI window when it offers one. */
  readonly ariWindow?: { readonly start: string, readonly end: string }
  /** The last failed order for this domain, until one succeeds. */
  readonly lastError?: string
  readonly lastErrorAt?: string
  /** When a failing domain may be ordered again (ISO 8601). */
  readonly retryAt?: string
}

/** The certificate manager the proxy holds. See createCertManager for the contract. */
export interface CertManager {
  /**
   * tls SNICallback: reads the in-memory cache only (never disk or network). Unknown names get
   * the self-signed fallback, and, when ACME is on and `policy(name)` allows it, an order starts
   * in the background (one per domain at a time, not during backoff).
   */
  sniCallback (servername: string, cb: (err: Error | null, ctx?: SecureContext) => void): void
  /** `{ key, cert }` of the self-signed fallback, for createSecureServer's default certificate. */
  defaultSecureContextOptions (): { key: string, cert: string }
  /** Answers `/.well-known/acme-challenge/<token>` of an order in progress; true when it answered. */
  handleHttpChallenge (req: IncomingMessage, res: ServerResponse): boolean
  /**
   * (Re)loads extra_certs_file, all or nothing. @throws CertError CERTS_EXTRA_INVALID /
   * CERTS_EXTRA_UNREADABLE naming the file and entry; the previous set keeps serving.
   */
  loadExtraCerts (): Promise<void>
  /**
   * Obtains a certificate now if the domain has none or is due for renewal; waits for an order
   * already running. @throws CertError CERTS_DOMAIN_NOT_ALLOWED, CERTS_ACME_DISABLED,
   * CERTS_ACME_UNAVAILABLE, CERTS_ORDER_BACKOFF, CERTS_ORDER_FAILED, CERTS_STOPPED
   */
  ensure (domain: string): Promise<void>
  /**
   * Loads extra_certs_file (throws like loadExtraCerts), then the stored certificates and the
   * ACME account key (corrupt ones are reported, moved aside and re-ordered), then starts the
   * renewal loop (unref'd timers). Storage failures (a full disk, permissions) never reject:
   * serving goes on, ACME retries with backoff and {@link CertManager.acmeStatus} says why.
   * Idempotent.
   */
  start (): Promise<void>
  /** Stops the renewal loop and new orders, and waits for running orders to settle. */
  stop (): Promise<void>
  /** Every known domain, sorted: user and ACME certificates, and domains still waiting for one. */
  status (): CertStatus[]
  /**
   * The PEMs of the certificate a handshake for `domain` gets now (user or ACME), or
   * undefined while only the self-signed fallback would serve it. Reads memory only.
   */
  servedPem (domain: string): { readonly source: CertSource, readonly chainPem: string, readonly keyPem: string } | undefined
  /** Whether ACME can order now, and if not, why (in words) and when it retries. */
  acmeStatus (): AcmeStatus
  on (event: 'order', fn: (e: OrderEvent) => void): this
  on (event: 'certificate', fn: (e: CertificateEvent) => void): this
  off (event: 'order', fn: (e: OrderEvent) => void): this
  off (event: 'certificate', fn: (e: CertificateEvent) => void): this
}
