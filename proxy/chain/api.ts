/**
 * @module proxy/chain/api
 * The parent's chain API (hono), under `/chain/v1/`:
 * - `POST register`   `{ name, child_url, domains: [{ domain, rate_profile?, redirect_to_https? }] }`
 *   → 200 `{ lease_ttl_seconds, domains }`, or 409 `{ error: { code, message, conflicts } }`
 * - `POST deregister` `{ name }` → 200 `{ deregistered }`
 * - `POST check`      `{ name, domains: ["a.example.com"] }` → 200 `{ conflicts: [{ domain, owner }] }`
 * - `GET status`      → the parent's chain status
 * Every route needs `Authorization: Bearer <psk>` (401 and counted otherwise;
 * logged at most once per AUTH_LOG_INTERVAL_MS, with the number left out).
 * Bodies are JSON, at most MAX_BODY_BYTES, checked by proxy/chain/schema.ts;
 * errors answer `{ error: { code, message } }` with the field named.
 */
import { Hono, type Context } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import type { Logger } from '../log.ts'
import { createLogThrottle } from '../log-throttle.ts'
import type { ChainAuth } from './auth.ts'
import { ChainError, DomainConflictError, type DomainConflict } from './errors.ts'
import { parseCheckRequest, parseDeregisterRequest, parseRegisterRequest, toWireDomain, type ChainDomain, type RegisterRequest } from './schema.ts'

/** At most one "wrong or missing PSK" line per this interval. */
export const AUTH_LOG_INTERVAL_MS = 10_000

/** Largest request body the API reads (a registration of MAX_DOMAINS long names fits). */
export const MAX_BODY_BYTES = 1 << 20

/** What the API does; the parent runtime implements it. */
export interface ChainApiDeps {
  auth: ChainAuth
  logger: Logger
  /** Counts a refused PSK (vmfront_chain_auth_failures_total). */
  onAuthFailure: () => void
  /** Registers or renews; throws DomainConflictError. Returns the lease and the accepted domains. */
  register: (request: RegisterRequest, peer: string) => { leaseTtlMs: number, domains: readonly ChainDomain[] }
  deregister: (name: string, peer: string) => boolean
  conflicts: (name: string, domains: readonly string[]) => DomainConflict[]
  status: () => unknown
  /**
   * Resolves once the last change is served (by every worker, SPEC §12): a lone
   * registration is answered only then, so it is served everywhere (a burst's
   * spaced swaps are not waited for).
   */
  inService?: () => Promise<void>
}

export type Env = { Bindings: { incoming?: { socket?: { remoteAddress?: string } } } }

export function peerOf (c: Context<Env>): string {
  return c.env?.incoming?.socket?.remoteAddress ?? ''
}

function errorBody (code: string, message: string, extra?: Record<string, unknown>): { error: Record<string, unknown> } {
  return { error: { code, message, ...extra } }
}

async function jsonBody (c: Context<Env>): Promise<unknown> {
  try {
    return await c.req.json()
  } catch {
    throw new ChainError('CHAIN_BAD_REQUEST', 'body: is not valid JSON (send Content-Type: application/json)', { status: 400 })
  }
}

/** Builds the chain API app (no globals: everything comes from `deps`). */
export function createChainApi (deps: ChainApiDeps): Hono<Env> {
  const app = new Hono<Env>()
  const { logger } = deps

  // Anyone can send a wrong key in a loop: one line per interval, with the count
  // of those left out (one key, so the throttle's own state stays one entry).
  const pskLog = createLogThrottle(AUTH_LOG_INTERVAL_MS)
  app.use('/chain/v1/*', async function requirePsk (c, next) {
    if (!deps.auth.checkBearer(c.req.header('authorization'))) {
      deps.onAuthFailure()
      const suppressed = pskLog.admit('psk')
      if (suppressed >= 0) logger.warn('chain API: wrong or missing PSK', { peer: peerOf(c), path: c.req.path, ...(suppressed > 0 ? { suppressed } : {}) })
      c.header('www-authenticate', 'Bearer realm="vmfront-chain"')
      return c.json(errorBody('CHAIN_UNAUTHORIZED', 'wrong or missing pre-shared key (Authorization: Bearer <psk>)'), 401)
    }
    await next()
  })
  app.use('/chain/v1/*', bodyLimit({
    maxSize: MAX_BODY_BYTES,
    onError: (c) => c.json(errorBody('CHAIN_PAYLOAD_TOO_LARGE', `body: larger than ${MAX_BODY_BYTES} bytes`), 413)
  }))

  app.post('/chain/v1/register', async function register (c) {
    const request = parseRegisterRequest(await jsonBody(c))
    const { leaseTtlMs, domains } = deps.register(request, peerOf(c))
    await deps.inService?.()
    return c.json({
      lease_ttl_seconds: leaseTtlMs / 1000,
      domains: domains.map(toWireDomain)
    })
  })
  app.post('/chain/v1/deregister', async function deregister (c) {
    const { name } = parseDeregisterRequest(await jsonBody(c))
    const deregistered = deps.deregister(name, peerOf(c))
    await deps.inService?.()
    return c.json({ deregistered })
  })
  app.post('/chain/v1/check', async function check (c) {
    const { name, domains } = parseCheckRequest(await jsonBody(c))
    return c.json({ conflicts: deps.conflicts(name, domains) })
  })
  app.get('/chain/v1/status', async (c) => c.json(await deps.status() as object))

  app.notFound((c) => c.json(errorBody('CHAIN_NOT_FOUND', `no such endpoint: ${c.req.method} ${c.req.path}`, { endpoints: ['POST /chain/v1/register', 'POST /chain/v1/deregister', 'POST /chain/v1/check', 'GET /chain/v1/status'] }), 404))
  app.onError((err, c) => {
    if (err instanceof DomainConflictError) {
      return c.json(errorBody(err.code, err.message, { conflicts: err.conflicts }), 409)
    }
    if (err instanceof ChainError && err.status !== undefined) {
      return c.json(errorBody(err.code, err.message), err.status as 400)
    }
    logger.error('chain API failed', { path: c.req.path, err })
    return c.json(errorBody('CHAIN_INTERNAL', 'internal error'), 500)
  })
  return app
}
