/**
 * @module proxy/chain/parent-client
 * The child's client of its parent's chain API (register, deregister, check),
 * with the PSK as a Bearer token and bounded time per call. Errors are typed:
 * CHAIN_PARENT_UNREACHABLE (network, timeout, 5xx), CHAIN_DOMAIN_CONFLICT (409,
 * with the conflicts), CHAIN_REGISTRATION_REFUSED (401, 400...).
 */
import { Agent, request } from 'undici'
import { ChainError, DomainConflictError, type DomainConflict } from './errors.ts'
import { fromWireDomain, toWireDomain, type ChainDomain, type WireDomain } from './schema.ts'

/** The parent's answer to a registration. */
export interface RegisterAnswer {
  leaseTtlMs: number
  domains: ChainDomain[]
}

export interface ParentClient {
  register (name: string, childUrl: string, domains: readonly ChainDomain[]): Promise<RegisterAnswer>
  deregister (name: string): Promise<boolean>
  check (name: string, domains: readonly string[]): Promise<DomainConflict[]>
  /** Closes the connection pool, aborting calls still in flight (shutdown). */
  close (): Promise<void>
}

export interface ParentClientOptions {
  parentUrl: string
  /** Read per request: a SIGHUP may change chain.psk. */
  psk: () => string
  /** Bound on each call, connect to last byte. */
  timeoutMs: number
}

/** Creates the client. Its connection pool is its own, closed by `close()`. */
export function createParentClient (options: ParentClientOptions): ParentClient {
  const origin = new URL(options.parentUrl).origin
  const agent = new Agent({ connect: { timeout: options.timeoutMs }, headersTimeout: options.timeoutMs, bodyTimeout: options.timeoutMs, keepAliveTimeout: 1000 })

  async function call (path: string, body: unknown): Promise<unknown> {
    let res
    try {
      res = await request(`${origin}/chain/v1/${path}`, {
        dispatcher: agent,
        method: 'POST',
        headers: { authorization: `Bearer ${options.psk()}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(options.timeoutMs)
      })
    } catch (err) {
      throw new ChainError('CHAIN_PARENT_UNREACHABLE', `parent ${origin} unreachable: ${(err as Error).message}`, { cause: err })
    }
    let parsed: unknown
    try {
      parsed = await res.body.json()
    } catch (err) {
      throw new ChainError(res.statusCode >= 500 ? 'CHAIN_PARENT_UNREACHABLE' : 'CHAIN_REGISTRATION_REFUSED', `parent ${origin} answered ${res.statusCode} without JSON`, { status: res.statusCode, cause: err })
    }
    if (res.statusCode === 200) return parsed
    const error = (parsed as { error?: { code?: string, message?: string, conflicts?: DomainConflict[] } }).error
    if (res.statusCode === 409 && Array.isArray(error?.conflicts)) throw new DomainConflictError(error.conflicts)
    const message = `parent ${origin} answered ${res.statusCode} to ${path}: ${error?.message ?? 'no message'}`
    throw new ChainError(res.statusCode >= 500 ? 'CHAIN_PARENT_UNREACHABLE' : 'CHAIN_REGISTRATION_REFUSED', message, { status: res.statusCode })
  }

  return {
    async register (name, childUrl, domains): Promise<RegisterAnswer> {
      const answer = await call('register', {
        name,
        child_url: childUrl,
        domains: domains.map(toWireDomain)
      }) as { lease_ttl_seconds?: unknown, domains?: WireDomain[] }
      const seconds = Number(answer.lease_ttl_seconds)
      if (!Number.isFinite(seconds) || seconds <= 0) throw new ChainError('CHAIN_REGISTRATION_REFUSED', `parent ${origin} answered without a valid lease_ttl_seconds`)
      return {
        leaseTtlMs: seconds * 1000,
        domains: (answer.domains ?? []).map(fromWireDomain)
      }
    },
    async deregister (name): Promise<boolean> {
      const answer = await call('deregister', { name }) as { deregistered?: unknown }
      return answer.deregistered === true
    },
    async check (name, domains): Promise<DomainConflict[]> {
      const answer = await call('check', { name, domains }) as { conflicts?: DomainConflict[] }
      return answer.conflicts ?? []
    },
    async close (): Promise<void> {
      // destroy, not close: a call the parent never answers must not hold the exit.
      await agent.destroy()
    }
  }
}
