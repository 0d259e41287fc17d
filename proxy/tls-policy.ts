/**
 * @module proxy/tls-policy
 * The TLS versions and cipher suites every TLS server of the proxy offers (the https
 * listener, the https chain API): Mozilla's "intermediate" profile without its DHE
 * suites. TLS 1.2 gets AEAD suites only (AES-GCM, ChaCha20-Poly1305) with ECDHE, so no
 * CBC suite is ever negotiated (LUCKY13, and the padding-oracle family).
 */

/**
 * TLS 1.3 suites must be listed too: Node caps the maximum version at TLS 1.2 when
 * `ciphers` names no TLS 1.3 suite. ECDSA first for the ACME (P-256) certificates,
 * RSA for the self-signed fallback and RSA user certificates.
 */
export const TLS_CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305'
].join(':')

/** Spread into a `tls`/`https`/`http2` server's options. */
export const TLS_SERVER_POLICY = { minVersion: 'TLSv1.2', ciphers: TLS_CIPHERS } as const
