/**
 * @module proxy/chain/mulch-client
 * A vmfront child's client of a mulch-proxy parent (SPEC §10), speaking exactly
 * what mulch-proxy's own child sends (cmd/mulch-proxy/app.go, mulchd's
 * server/domains.go): `POST <parent_url>/domains` and `POST <parent_url>/domains/conflicts`
 * with `Mulch-PSK: <psk>`, `Content-Type: application/json` and
 * `{"Domains":[{"Domain","RateProfile"}],"ForwardTo":"<child_url>"}`.
 * A Mulch parent has no lease and no deregistration: registering once (at start
 * and on SIGHUP) is the whole protocol.
 */
import { Agent, request } from 'undici'
import { ChainError, type DomainConflict } from './errors.ts'
import { MULCH_PSK_HEADER_NAME } from './mulch-api.ts'
import type { ChainDomain } from './schema.ts'

export interface MulchParentClient {
  /** `POST /domains`; resolves on 200, throws a typed ChainError otherwise. */
  register (forwardTo: string, domains: readonly ChainDomain[]): Promise<void>
  /** `POST /domains/conflicts`: the domains owned elsewhere (`null` = none, as Go encodes it). */
  check (forwardTo: string, domains: readonly string[]): Promise<DomainConflict[]>
  close (): Promise<void>
}

/** Creates the client; `timeoutMs` bounds each call (mulch-proxy uses 10 s). */
export function createMulchParentClient (options: { parentUrl: string, psk: () => string, timeoutMs: number }): MulchParentClient {
  // mulch-proxy appends the path to the URL as configured (a path prefix is kept).
  const base = options.parentUrl.replace(/\/+$/, '')
  const agent = new Agent({ connect: { timeout: options.timeoutMs }, headersTimeout: options.timeoutMs, bodyTimeout: options.timeoutMs, keepAliveTimeout: 1000 })

  async function call (path: string, forwardTo: string, domains: ReadonlyArray<{ domain: string, rateProfile?: string }>): Promise<{ status: number, text: string }> {
    const body = { Domains: domains.map((d) => ({ Domain: d.domain, RateProfile: d.rateProfile ?? '' })), ForwardTo: forwardTo }
    try {
      const res = await request(`${base}${path}`, {
        dispatcher: agent,
        method: 'POST',
        headers: { 'content-type': 'application/json', [MULCH_PSK_HEADER_NAME]: options.psk() },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(options.timeoutMs)
      })
      return { status: res.statusCode, text: await res.body.text() }
    } catch (err) {
      throw new ChainError('CHAIN_PARENT_UNREACHABLE', `Mulch parent ${base} unreachable: ${(err as Error).message}`, { cause: err })
    }
  }

  function refused (path: string, status: number, text: string): ChainError {
    const why = status === 403 ? ' (wrong chain.psk: it must be the parent\'s proxy_chain_psk)' : ''
    return new ChainError(status >= 500 ? 'CHAIN_PARENT_UNREACHABLE' : 'CHAIN_REGISTRATION_REFUSED', `Mulch parent ${base} answered ${status} to POST ${path}${why}: ${text.trim().slice(0, 200)}`, { status })
  }

  return {
    async register (forwardTo, domains): Promise<void> {
      const { status, text } = await call('/domains', forwardTo, domains)
      if (status !== 200) throw refused('/domains', status, text)
    },
    async check (forwardTo, domains): Promise<DomainConflict[]> {
      const { status, text } = await call('/domains/conflicts', forwardTo, domains.map((domain) => ({ domain })))
      if (status !== 200) throw refused('/domains/conflicts', status, text)
      let parsed: unknown
      try {
        parsed = JSON.parse(text)
      } catch {
        throw new ChainError('CHAIN_REGISTRATION_REFUSED', `Mulch parent ${base} answered POST /domains/conflicts without JSON`)
      }
      if (parsed === null) return []
      if (!Array.isArray(parsed)) throw new ChainError('CHAIN_REGISTRATION_REFUSED', `Mulch parent ${base} answered POST /domains/conflicts with no array`)
      return parsed.map((c: { Domain?: unknown, Owner?: unknown }) => ({ domain: String(c.Domain), owner: String(c.Owner) }))
    },
    async close (): Promise<void> {
      await agent.destroy()
    }
  }
}

