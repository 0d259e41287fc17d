/**
 * @module proxy/chain/mulch-api
 * mulch-proxy's chain API on a vmfront parent's chain API listener (SPEC §10), so
 * an unchanged mulch-proxy child registers beside vmfront's own children:
 * - `POST /domains` `{"Domains":[{"Domain","RateProfile"}],"ForwardTo"}` with
 *   `Mulch-PSK: <psk>` → 200 and the JSON string `"OK"`. The list replaces the
 *   child's previous one (an empty list removes the child), as mulch-proxy does.
 * - `POST /domains/conflicts` (same body) → 200 and a JSON array of
 *   `{"Domain","Owner"}` (`[]` when none).
 * A wrong or absent Mulch-PSK gets 403 `Forbidden`, another method 405, a body
 * that is not that JSON 400: text bodies, as Go's http.Error writes them.
 *
 * Where vmfront differs, and why: mulch-proxy lets `POST /domains` overwrite a
 * domain another child owns. Here the namespace is shared with vmfront children
 * and the parent's own routes, so a domain owned elsewhere is not taken: the
 * free domains are registered, and the answer is 409 with a text body naming
 * each refused domain and its owner (a mulch child logs "parent returned error
 * 409"; mulchd's own conflict check, asked first, normally prevents it). A Mulch
 * child's domains may still move to another ForwardTo on the same host, which is
 * mulch-proxy's notion of the same owner (registry.ts).
 */
import type { Context, Hono } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import type { Logger } from '../log.ts'
import { createLogThrottle } from '../log-throttle.ts'
import { AUTH_LOG_INTERVAL_MS, MAX_BODY_BYTES, peerOf, type Env } from './api.ts'
import type { ChainAuth } from './auth.ts'
import { ChainError, type DomainConflict } from './errors.ts'
import { MAX_DOMAINS, parseChildUrl, type ChainDomain, type RegisterRequest } from './schema.ts'

/** mulch-proxy's chain header (cmd/mulch-proxy/app.go PSKHeaderName). */
import { MULCH_PSK_HEADER_NAME } from '../headers.ts'
export { MULCH_PSK_HEADER_NAME }

/**
 * Host names as mulchd writes them (it accepts `_`): letters, digits, `_`, `.`
 * and `-`. vmfront lower-cases them, as its router does with Host.
 */
const MULCH_DOMAIN = /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})$/

/** A parsed body of `POST /domains` or `POST /domains/conflicts`. */
export interface MulchChainDomains {
  /** The ForwardTo origin: the child's name and URL here. */
  readonly forwardTo: string
  readonly domains: readonly ChainDomain[]
}

export interface MulchApiDeps {
  auth: ChainAuth
  logger: Logger
  onAuthFailure: () => void
  /** The parent's registration (throws DomainConflictError or ChainError). */
  register: (request: RegisterRequest, peer: string) => unknown
  /** Removes a child; false when it was unknown. */
  deregister: (name: string, peer: string) => boolean
  conflicts: (name: string, domains: readonly string[], mulchUrl: string) => DomainConflict[]
  /** How an owner is reported to a Mulch child (mulch-proxy reports a host name). */
  ownerLabel: (owner: string) => string
  /** Resolves once the last change is served (see ChainApiDeps.inService). */
  inService?: () => Promise<void>
}

class MulchBadRequest extends ChainError {
  constructor (message: string) {
    super('CHAIN_BAD_REQUEST', message, { status: 400 })
  }
}

/**
 * Parses Mulch's `common.ProxyChainDomains` JSON. Like Go's decoder, key case is
 * ignored and unknown keys are skipped; `Domains: null` is an empty list.
 */
export function parseMulchDomains (body: unknown): MulchChainDomains {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new MulchBadRequest('body: must be a JSON object {"Domains":[...],"ForwardTo":"http://child:port"}')
  const get = (o: object, key: string): unknown => {
    for (const [k, v] of Object.entries(o)) if (k.toLowerCase() === key) return v
    return undefined
  }
  let forwardTo: string
  try {
    forwardTo = parseChildUrl(get(body, 'forwardto'), 'ForwardTo')
  } catch (err) {
    throw new MulchBadRequest((err as Error).message)
  }
  const list = get(body, 'domains') ?? []
  if (!Array.isArray(list)) throw new MulchBadRequest('Domains: must be an array')
  if (list.length > MAX_DOMAINS) throw new MulchBadRequest(`Domains: has ${list.length} entries (at most ${MAX_DOMAINS})`)
  const seen = new Set<string>()
  const domains: ChainDomain[] = []
  list.forEach((item: unknown, i: number) => {
    if (typeof item !== 'object' || item === null) throw new MulchBadRequest(`Domains[${i}]: must be an object {"Domain","RateProfile"}`)
    const name = get(item, 'domain')
    if (typeof name !== 'string' || !MULCH_DOMAIN.test(name)) throw new MulchBadRequest(`Domains[${i}].Domain: must be a host name`)
    const profile = get(item, 'rateprofile') ?? ''
    if (typeof profile !== 'string') throw new MulchBadRequest(`Domains[${i}].RateProfile: must be a string`)
    const domain = name.toLowerCase()
    // mulch-proxy keeps the last of two equal names (a map): so do we.
    if (seen.has(domain)) return
    seen.add(domain)
    domains.push(profile === '' ? { domain } : { domain, rateProfile: profile })
  })
  return { forwardTo, domains }
}

/** Go's http.Error: a text body with a newline, nosniff. */
function goError (c: Context<Env>, message: string, status: 400 | 403 | 405 | 409 | 413 | 500 | 503): Response {
  return c.body(`${message}\n`, status, { 'content-type': 'text/plain; charset=utf-8', 'x-content-type-options': 'nosniff' })
}

/** Adds Mulch's two routes to the chain API app. */
export function addMulchRoutes (app: Hono<Env>, deps: MulchApiDeps): void {
  const { logger } = deps
  const pskLog = createLogThrottle(AUTH_LOG_INTERVAL_MS)

  app.use('/domains', bodyLimit({ maxSize: MAX_BODY_BYTES, onError: (c) => goError(c as Context<Env>, 'http: request body too large', 413) }))
  app.use('/domains/conflicts', bodyLimit({ maxSize: MAX_BODY_BYTES, onError: (c) => goError(c as Context<Env>, 'http: request body too large', 413) }))

  /** mulch-proxy checks the PSK first, then the method, then decodes the body. */
  async function admit (c: Context<Env>, route: string): Promise<MulchChainDomains | Response> {
    if (!deps.auth.checkPsk(c.req.header(MULCH_PSK_HEADER_NAME))) {
      deps.onAuthFailure()
      const suppressed = pskLog.admit('psk')
      if (suppressed >= 0) logger.warn('chain API (Mulch protocol): wrong or missing Mulch-PSK', { peer: peerOf(c), path: c.req.path, ...(suppressed > 0 ? { suppressed } : {}) })
      return goError(c, 'Forbidden', 403)
    }
    if (c.req.method !== 'POST') return goError(c, `Method ${c.req.method} not allowed for route ${route}`, 405)
    let body: unknown
    try {
      body = JSON.parse(await c.req.text())
    } catch {
      return goError(c, 'body: is not valid JSON', 400)
    }
    try {
      return parseMulchDomains(body)
    } catch (err) {
      if (err instanceof MulchBadRequest) return goError(c, err.message, 400)
      throw err
    }
  }

  app.all('/domains', async function mulchRegister (c) {
    const parsed = await admit(c, '/domains')
    if (parsed instanceof Response) return parsed
    const peer = peerOf(c)
    const { forwardTo, domains } = parsed
    const found = deps.conflicts(forwardTo, domains.map((d) => d.domain), forwardTo)
    const taken = new Set(found.map((f) => f.domain))
    const free = domains.filter((d) => !taken.has(d.domain))
    try {
      // An empty list: mulch-proxy drops the child's domains, and so the child.
      if (free.length === 0) deps.deregister(forwardTo, peer)
      else deps.register({ name: forwardTo, childUrl: forwardTo, domains: free, protocol: 'mulch' }, peer)
    } catch (err) {
      if (err instanceof ChainError && err.code === 'CHAIN_CHILDREN_FULL') return goError(c, err.message, 503)
      if (err instanceof ChainError && err.code === 'CHAIN_DOMAIN_CONFLICT') return goError(c, err.message, 409)
      throw err
    }
    await deps.inService?.()
    if (found.length > 0) {
      logger.warn('chain registration (Mulch protocol): domains owned elsewhere were not taken', { child: forwardTo, peer, conflicts: found })
      return goError(c, `domain conflict: ${found.map((f) => `${f.domain} (${deps.ownerLabel(f.owner)})`).join(', ')}`, 409)
    }
    return c.body('"OK"', 200, { 'content-type': 'application/json' })
  })

  app.all('/domains/conflicts', async function mulchConflicts (c) {
    const parsed = await admit(c, '/domains/conflicts')
    if (parsed instanceof Response) return parsed
    const found = deps.conflicts(parsed.forwardTo, parsed.domains.map((d) => d.domain), parsed.forwardTo)
    return c.body(JSON.stringify(found.map((f) => ({ Domain: f.domain, Owner: deps.ownerLabel(f.owner) }))), 200, { 'content-type': 'application/json' })
  })
}
