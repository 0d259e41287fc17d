/**
 * @module proxy/chain/auth
 * The two proofs of the chain's pre-shared key: the `Authorization: Bearer <psk>`
 * a child sends to the parent's API, and the token the parent puts in every
 * forwarded request (CHAIN_AUTH_HEADER) so the child believes its X-Forwarded-*.
 * Every comparison is constant-time.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto'

/** The HMAC label of the forwarding token: changing it invalidates every token. */
const FORWARD_TOKEN_LABEL = 'vmfront-chain-forward-v1'

/** Checks and derives the chain's PSK proofs. Holds no state beyond the derived values. */
export interface ChainAuth {
  /** True when an Authorization header value is `Bearer <psk>`. */
  checkBearer (authorization: string | undefined): boolean
  /** The value of CHAIN_AUTH_HEADER on requests the parent forwards. */
  readonly forwardToken: string
  /** True when a CHAIN_AUTH_HEADER value is the forwarding token. */
  checkForwardToken (value: string | string[] | undefined): boolean
}

/**
 * Derives the proofs from the PSK. The forwarding token is HMAC-SHA256(psk, label):
 * it proves knowledge of the PSK without sending it on every request.
 */
export function createChainAuth (psk: string): ChainAuth {
  const pskDigest = createHash('sha256').update(psk).digest()
  const forwardToken = createHmac('sha256', psk).update(FORWARD_TOKEN_LABEL).digest('hex')
  const forwardTokenBytes = Buffer.from(forwardToken, 'latin1')
  return {
    forwardToken,
    checkBearer (authorization: string | undefined): boolean {
      if (authorization === undefined) return false
      const match = /^Bearer[ \t]+(.+)$/i.exec(authorization)
      if (match === null) return false
      // Hashing both sides gives equal lengths, so timingSafeEqual leaks nothing
      // about the PSK's length either.
      return timingSafeEqual(createHash('sha256').update(match[1].trim()).digest(), pskDigest)
    },
    checkForwardToken (value: string | string[] | undefined): boolean {
      if (typeof value !== 'string' || value.length !== forwardToken.length) return false
      return timingSafeEqual(Buffer.from(value, 'latin1'), forwardTokenBytes)
    }
  }
}
