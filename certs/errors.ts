/**
 * @module certs/errors
 * Typed errors of the certificate library. Callers check `code`, never the message.
 */

export type CertErrorCode =
  /** Options given to createCertManager are invalid. */
  | 'CERTS_CONFIG_INVALID'
  /** extra_certs_file cannot be read (missing file, unreadable cert or key file). */
  | 'CERTS_EXTRA_UNREADABLE'
  /** extra_certs_file is readable but wrong (syntax, key mismatch, expired, domain not covered). */
  | 'CERTS_EXTRA_INVALID'
  /** An ACME order failed (cause: the CA's or the network's error). */
  | 'CERTS_ORDER_FAILED'
  /** ensure() was called while the domain is backing off after failures. */
  | 'CERTS_ORDER_BACKOFF'
  /** The policy does not allow a certificate for this name. */
  | 'CERTS_DOMAIN_NOT_ALLOWED'
  /** ACME is disabled, so no certificate can be ordered. */
  | 'CERTS_ACME_DISABLED'
  /** The manager is stopped. */
  | 'CERTS_STOPPED'
  /** A storage key (a domain or issuer name) would escape the storage directory. */
  | 'CERTS_STORAGE_KEY_INVALID'
  /** A stored certificate, key or account key cannot be parsed or does not match. */
  | 'CERTS_STORAGE_CORRUPT'
  /** Reading or writing storage failed (disk full, permissions, a file where a folder should be). */
  | 'CERTS_STORAGE_FAILED'
  /** ACME cannot run yet: its account key or stored certificates are unavailable (retried with backoff). */
  | 'CERTS_ACME_UNAVAILABLE'
  /** A PEM certificate or key cannot be parsed. */
  | 'CERTS_PEM_INVALID'
  /** The CA's ACME Renewal Information answer is unusable. */
  | 'CERTS_ARI_INVALID'

/** Base class: a stable `code`, and where relevant the domain, file and file entry. */
export class CertError extends Error {
  readonly code: CertErrorCode
  readonly domain: string | undefined
  readonly file: string | undefined
  /** Index of the `[[certificate]]` entry in extra_certs_file (0-based). */
  readonly entry: number | undefined
  /** For CERTS_ORDER_BACKOFF: when the next attempt is allowed. */
  readonly retryAt: Date | undefined
  constructor (code: CertErrorCode, message: string, options: { cause?: unknown, domain?: string, file?: string, entry?: number, retryAt?: Date } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'CertError'
    this.code = code
    this.domain = options.domain
    this.file = options.file
    this.entry = options.entry
    this.retryAt = options.retryAt
  }
}

/** The message of any thrown value (errors thrown by dependencies are not always Errors). */
export function errorMessage (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

/**
 * Words for an error a person reads (logs, /status): for a Node system error, its description
 * without the code and syscall ("no space left on device", not "ENOSPC: no space left on device,
 * write"); for a CertError, its message; otherwise the message.
 */
export function describeError (err: unknown): string {
  if (!(err instanceof Error)) return String(err)
  const code = (err as { code?: unknown }).code
  if (typeof code === 'string' && /^E[A-Z0-9]+$/.test(code) && err.message.startsWith(`${code}: `)) {
    const syscall = (err as { syscall?: unknown }).syscall
    const text = err.message.slice(code.length + 2)
    const cut = typeof syscall === 'string' ? text.lastIndexOf(`, ${syscall}`) : -1
    return cut > 0 ? text.slice(0, cut) : text
  }
  return err.message
}

/**
 * Where a storage operation failed and why, in words: the file named by a CERTS_STORAGE_FAILED
 * error (else `key`), and the reason of its cause ("no space left on device").
 */
export function storageFailureParts (err: unknown, key: string): { where: string, reason: string } {
  if (err instanceof CertError && err.code === 'CERTS_STORAGE_FAILED') {
    return { where: err.file ?? key, reason: describeError(err.cause ?? err) }
  }
  return { where: key, reason: describeError(err) }
}
