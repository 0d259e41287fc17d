/**
 * @module certs
 * Public API of the certificate library, the only file proxy/ imports: createCertManager and
 * its types. The library knows nothing about the proxy; the proxy plugs in a policy ("may I get
 * a certificate for this name?") and calls handleHttpChallenge first on its plain-HTTP listener.
 */
export { createCertManager, normalizeServerName } from './manager.ts'
export { CertError, describeError, type CertErrorCode } from './errors.ts'
// The one atomic-write helper (tmp + fsync + rename, temp file removed on failure); the proxy's dump uses it too.
export { createChallengeStore, HTTP01_PREFIX, type ChallengeStore } from './http01.ts'
export { issuerKeyFromUrl } from './storage.ts'
export { writeFileAtomic } from './file-storage.ts'
export { acmeOptionProblems, DIRECTORY_SHORTCUTS, resolveDirectoryUrl, type AcmeOptions, type CertLogger, type CertManagerOptions } from './config.ts'
export type { AcmeStatus, CertManager, CertStatus, CertificateEvent, OrderEvent, OrderReason, CertSource } from './types.ts'
export type { Issuer, IssueRequest, IssuedCertificate } from './issuer.ts'
export type { Storage } from './storage.ts'
export type { KeyType } from './x509.ts'
// `vmfront check`: every problem of extra_certs_file at once, nothing loaded into a manager.
export { EXTRA_CERT_EXPIRY_WARNING_MS, inspectExtraCerts, type ExtraCertProblem, type ExtraCertsInspection } from './extra-certs.ts'
export type { RenewalWindow } from './ari.ts'
