/**
 * @module proxy/chain/auth
 * The proofs of the chain's pre-shared key. Every comparison is constant-time.
 *
 * - Child → parent API: `Authorization: Bearer <psk>`.
 * - Parent → child, per HTTP/2 session (SPEC §14): nothing the parent sends is a
 *   standing credential. When the parent opens a session to a child it asks the
 *   child for a fresh nonce on that session (CHAIN_CHALLENGE_PATH) and answers it
 *   with HMAC-SHA256(psk, label ‖ child origin ‖ nonce) (CHAIN_SESSION_PATH). The
 *   child then trusts that one session, and only it: a proof is worthless on any
 *   other connection, because the child issues a new nonce per session and takes
 *   each nonce once. The session's control key (the same HMAC under another
 *   label) lets the parent ask for one-time WebSocket tickets on it.
 *
 * Every value travels in CHAIN_AUTH_HEADER, which the proxy strips from whatever
 * it forwards, so none reaches a VM.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto'

/** The chain's own request paths on a child, answered by the child and never routed. */
export const CHAIN_CONTROL_PREFIX = '/.well-known/vmfront-chain/'
/** GET: the child answers with a fresh nonce for this session (in CHAIN_AUTH_HEADER). */
export const CHAIN_CHALLENGE_PATH = '/.well-known/vmfront-chain/v1/challenge'
/** POST with the session proof (in CHAIN_AUTH_HEADER): 204 when the session is now trusted. */
export const CHAIN_SESSION_PATH = '/.well-known/vmfront-chain/v1/session'
/** POST with the session's control key: a one-time WebSocket ticket (in CHAIN_AUTH_HEADER). */
export const CHAIN_TICKET_PATH = '/.well-known/vmfront-chain/v1/ws-ticket'

/** HMAC labels: changing one invalidates every value of its kind. */
const SESSION_PROOF_LABEL = 'vmfront-chain-session-proof-v1'
const CONTROL_KEY_LABEL = 'vmfront-chain-session-control-v1'

/** Checks and derives the chain's PSK proofs. Holds no state beyond the derived values. */
export interface ChainAuth {
  /** True when an Authorization header value is `Bearer <psk>`. */
  checkBearer (authorization: string | undefined): boolean
  /** True when a header value is the PSK itself (mulch-proxy's `Mulch-PSK`). */
  checkPsk (value: string | string[] | undefined): boolean
  /** The parent's answer to a child's nonce; `childOrigin` is the child's registered URL origin. */
  sessionProof (childOrigin: string, nonce: string): string
  /** True when `proof` (a header value) is sessionProof(childOrigin, nonce). */
  checkSessionProof (childOrigin: string, nonce: string, proof: string | string[] | undefined): boolean
  /** The key an authenticated session's control requests carry. */
  controlKey (childOrigin: string, nonce: string): string
  /** The PSK itself, for the headers that carry it (Bearer to a parent, Mulch-PSK). */
  psk (): string
  /**
   * A SIGHUP changed chain.psk: every check and proof from now on uses the new one.
   * Sessions already proven stay up (their proof was right when it was made).
   */
  rekey (psk: string): void
}

function hmac (psk: string, label: string, childOrigin: string, nonce: string): string {
  // Lengths go first so no two (origin, nonce) pairs share an input.
  return createHmac('sha256', psk).update(`${label}\n${childOrigin.length}:${childOrigin}\n${nonce.length}:${nonce}`).digest('hex')
}

/** Constant-time equality of a header value and an expected hex string. */
export function sameSecret (value: string | string[] | undefined, expected: string): boolean {
  if (typeof value !== 'string' || value.length !== expected.length) return false
  return timingSafeEqual(Buffer.from(value, 'latin1'), Buffer.from(expected, 'latin1'))
}

/** Derives the proofs from the PSK. */
export function createChainAuth (initialPsk: string): ChainAuth {
  let psk = initialPsk
  let pskDigest = createHash('sha256').update(psk).digest()
  return {
    checkBearer (authorization: string | undefined): boolean {
      if (authorization === undefined) return false
      const match = /^Bearer[ \t]+(.+)$/i.exec(authorization)
      if (match === null) return false
      // Hashing both sides gives equal lengths, so timingSafeEqual leaks nothing
      // about the PSK's length either.
      return timingSafeEqual(createHash('sha256').update(match[1].trim()).digest(), pskDigest)
    },
    checkPsk (value: string | string[] | undefined): boolean {
      if (typeof value !== 'string') return false
      return timingSafeEqual(createHash('sha256').update(value).digest(), pskDigest)
    },
    sessionProof: (childOrigin, nonce) => hmac(psk, SESSION_PROOF_LABEL, childOrigin, nonce),
    checkSessionProof: (childOrigin, nonce, proof) => sameSecret(proof, hmac(psk, SESSION_PROOF_LABEL, childOrigin, nonce)),
    controlKey: (childOrigin, nonce) => hmac(psk, CONTROL_KEY_LABEL, childOrigin, nonce),
    psk: () => psk,
    rekey (next) {
      psk = next
      pskDigest = createHash('sha256').update(psk).digest()
    }
  }
}
