/**
 * @module certs/issuer
 * The Issuer contract (who turns a domain into a certificate) and the ACME order payload rules.
 */
import type { RenewalWindow } from './ari.ts'

/** What to order. */
export interface IssueRequest {
  readonly domain: string
  /** RFC 9773 §5: the ARI certificate ID of the certificate this order replaces. */
  readonly replaces?: string
}

/** An issued certificate: the PEM chain (leaf first) and its new private key (PKCS#8 PEM). */
export interface IssuedCertificate {
  readonly chainPem: string
  readonly keyPem: string
}

/**
 * Obtains certificates. Production: acme-issuer.ts (acme-client against an ACME directory);
 * tests may supply their own. Implementations must be safe to call concurrently for different
 * domains (the manager never calls `issue` twice at once for one domain).
 */
export interface Issuer {
  /** Storage namespace of this issuer (see storage.ts issuerKeyFromUrl). */
  readonly key: string
  /** Loads or creates the account (idempotent). A corrupt stored account key is replaced. */
  init (): Promise<void>
  /** @throws CertError CERTS_ORDER_FAILED */
  issue (request: IssueRequest): Promise<IssuedCertificate>
  /**
   * The CA's suggested renewal window for a certificate (RFC 9773), or `undefined` when the CA
   * offers no renewalInfo endpoint. @throws on network or CA errors
   */
  renewalInfo (certId: string): Promise<RenewalWindow | undefined>
  /** Releases connections (called by the manager's stop()). */
  close? (): void
}

/** A newOrder payload (RFC 8555 §7.4, plus `profile` from draft-ietf-acme-profiles and `replaces` from RFC 9773). */
export interface OrderPayload {
  identifiers: Array<{ type: 'dns', value: string }>
  profile?: string
  replaces?: string
}

/** Builds the newOrder payload; optional fields appear only when set, so CAs that predate them see plain RFC 8555. */
export function buildOrderPayload (domain: string, extra: { profile?: string, replaces?: string } = {}): OrderPayload {
  const payload: OrderPayload = { identifiers: [{ type: 'dns', value: domain }] }
  if (extra.profile !== undefined && extra.profile !== '') payload.profile = extra.profile
  if (extra.replaces !== undefined && extra.replaces !== '') payload.replaces = extra.replaces
  return payload
}
