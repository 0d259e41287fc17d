/**
 * @module certs/ari
 * ACME Renewal Information (RFC 9773): the certificate identifier, the parsing of the CA's
 * suggested renewal window, and the choice of a renewal time inside it.
 */
import { CertError } from './errors.ts'

/** Re-check interval when the CA sends no usable Retry-After (RFC 9773 §4.3.3 suggests hours). */
export const ARI_DEFAULT_RECHECK_MS = 6 * 3600_000
const ARI_MIN_RECHECK_MS = 60_000
const ARI_MAX_RECHECK_MS = 24 * 3600_000

/**
 * RFC 9773 §4.1 certificate identifier: base64url(AKI keyIdentifier) "." base64url(serial DER
 * content octets, leading zero included), both without padding.
 */
export function ariCertId (authorityKeyId: Buffer, serial: Buffer): string {
  return `${authorityKeyId.toString('base64url')}.${serial.toString('base64url')}`
}

/** The CA's suggested renewal window for one certificate, and when to ask again. */
export interface RenewalWindow {
  readonly start: Date
  readonly end: Date
  readonly explanationUrl: string | undefined
  /** From the Retry-After header, clamped to [1 min, 24 h]; 6 h when absent. */
  readonly recheckMs: number
}

function parseRetryAfter (header: string | undefined, now: number): number {
  if (header === undefined || header.trim() === '') return ARI_DEFAULT_RECHECK_MS
  const seconds = Number(header)
  const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(header) - now
  if (!Number.isFinite(ms)) return ARI_DEFAULT_RECHECK_MS
  return Math.min(ARI_MAX_RECHECK_MS, Math.max(ARI_MIN_RECHECK_MS, ms))
}

/**
 * Parses a renewalInfo response body (`{ suggestedWindow: { start, end }, explanationURL? }`).
 * @throws CertError CERTS_ARI_INVALID when the window is missing, unparseable or end <= start
 */
export function parseRenewalInfo (body: unknown, retryAfter: string | undefined, now: number): RenewalWindow {
  const win = (body as { suggestedWindow?: { start?: unknown, end?: unknown } } | null)?.suggestedWindow
  const start = typeof win?.start === 'string' ? new Date(win.start) : undefined
  const end = typeof win?.end === 'string' ? new Date(win.end) : undefined
  if (start === undefined || end === undefined || Number.isNaN(start.getTime()) || Number.isNaN(end.getTime()) || end <= start) {
    throw new CertError('CERTS_ARI_INVALID', `renewalInfo without a valid suggestedWindow: ${JSON.stringify(body)}`)
  }
  const explanation = (body as { explanationURL?: unknown }).explanationURL
  return {
    start,
    end,
    explanationUrl: typeof explanation === 'string' ? explanation : undefined,
    recheckMs: parseRetryAfter(retryAfter, now)
  }
}

/** A uniformly random time in the window (RFC 9773 §4.2), spreading renewals of many clients. */
export function pickRenewalTime (window: RenewalWindow, random: number): Date {
  const span = window.end.getTime() - window.start.getTime()
  return new Date(window.start.getTime() + Math.floor(span * random))
}
