/**
 * @module proxy/chain/errors
 * Typed errors of parent/child chaining. Callers check `code`, never the message;
 * `status` is the HTTP status the chain API answers with, where one applies.
 */
import { ProxyError } from '../errors.ts'

export type ChainErrorCode =
  | 'CHAIN_UNAUTHORIZED'
  | 'CHAIN_BAD_REQUEST'
  | 'CHAIN_PAYLOAD_TOO_LARGE'
  | 'CHAIN_DOMAIN_CONFLICT'
  | 'CHAIN_PARENT_UNREACHABLE'
  | 'CHAIN_REGISTRATION_REFUSED'
  | 'CHAIN_CHILD_DOWN'
  | 'CHAIN_CONNECT_TIMEOUT'
  | 'CHAIN_PING_TIMEOUT'
  | 'CHAIN_SESSION_CLOSED'
  | 'CHAIN_API_UNAVAILABLE'
  | 'CHAIN_CHILDREN_FULL'

/** A chaining failure; `status` is the HTTP status the chain API answers with, where one applies. */
export class ChainError extends ProxyError<ChainErrorCode> {
  constructor (code: ChainErrorCode, message: string, options: { status?: number, cause?: unknown } = {}) {
    super(code, message, options)
    this.name = 'ChainError'
  }
}

/** A domain and the child (or "(parent)") that already serves it. */
export interface DomainConflict {
  readonly domain: string
  readonly owner: string
}

/** A registration asked for domains owned by someone else (HTTP 409). */
export class DomainConflictError extends ChainError {
  readonly conflicts: readonly DomainConflict[]
  constructor (conflicts: readonly DomainConflict[]) {
    super('CHAIN_DOMAIN_CONFLICT', `domain${conflicts.length === 1 ? '' : 's'} already served elsewhere: ${conflicts.map((c) => `${c.domain} (owner: ${c.owner})`).join(', ')}`, { status: 409 })
    this.name = 'DomainConflictError'
    this.conflicts = conflicts
  }
}
