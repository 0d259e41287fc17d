/**
 * @module proxy/chain/schema
 * The chain API's request bodies, parsed and checked at the boundary. Every
 * problem names the field (`domains[2].domain: ...`) so a child's operator sees
 * what to fix. Unknown keys are refused, like the config and route files.
 */
import { hostnameProblem } from '../route-table.ts'
import { ChainError } from './errors.ts'

/** A chain child's name: what the parent keys its registration by. */
const CHILD_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/
const PROFILE_NAME = /^[A-Za-z0-9_.-]{1,64}$/
/** More domains than any one host serves; bounds the work one request can cause. */
export const MAX_DOMAINS = 10_000

/** One domain a child serves, with the rate profile the parent should apply. */
export interface ChainDomain {
  readonly domain: string
  readonly rateProfile?: string
  /**
   * Plain HTTP requests get a 308 to https. The parent applies it, with its own
   * https port: the client's https is the parent's. Set only when true.
   */
  readonly redirectToHttps?: true
}

/** A domain as the chain API and the registrations file write it. */
export interface WireDomain {
  domain: string
  rate_profile?: string
  redirect_to_https?: true
}

/** The wire form of a domain (absent fields left out). */
export function toWireDomain (d: ChainDomain): WireDomain {
  const wire: WireDomain = { domain: d.domain }
  if (d.rateProfile !== undefined) wire.rate_profile = d.rateProfile
  if (d.redirectToHttps === true) wire.redirect_to_https = true
  return wire
}

/** A domain from a trusted wire form (the parent's answer); the parent's own input goes through parseRegisterRequest. */
export function fromWireDomain (d: WireDomain): ChainDomain {
  return {
    domain: d.domain,
    ...(d.rate_profile === undefined ? {} : { rateProfile: d.rate_profile }),
    ...(d.redirect_to_https === true ? { redirectToHttps: true as const } : {})
  }
}

export interface RegisterRequest {
  readonly name: string
  readonly childUrl: string
  readonly domains: readonly ChainDomain[]
  /** A mulch-proxy child (set by proxy/chain/mulch-api.ts only, never from vmfront's wire format). */
  readonly protocol?: 'mulch'
}

export interface CheckRequest {
  readonly name: string
  readonly domains: readonly string[]
}

function bad (field: string, message: string): ChainError {
  return new ChainError('CHAIN_BAD_REQUEST', `${field}: ${message}`, { status: 400 })
}

function object (body: unknown, keys: readonly string[], field = 'body'): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw bad(field, 'must be a JSON object')
  for (const key of Object.keys(body)) {
    if (!keys.includes(key)) throw bad(field === 'body' ? key : `${field}.${key}`, `is not a known key (known: ${keys.join(', ')})`)
  }
  return body as Record<string, unknown>
}

/** Checks a child name; throws CHAIN_BAD_REQUEST naming `field`. */
export function parseChildName (value: unknown, field = 'name'): string {
  if (typeof value !== 'string') throw bad(field, 'is required and must be a string')
  if (!CHILD_NAME.test(value)) throw bad(field, `"${value}" is not a valid child name (letters, digits, "_", "." and "-", 1-64 characters)`)
  return value
}

/**
 * Checks a child URL: http:// or https://, a host, no credentials, path, query or
 * fragment (the parent forwards to the origin). Returns the origin.
 */
export function parseChildUrl (value: unknown, field = 'child_url'): string {
  if (typeof value !== 'string') throw bad(field, 'is required and must be a string')
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw bad(field, `"${value}" is not a URL (expected http://host:port or https://host:port)`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw bad(field, `"${value}" must use http:// or https://`)
  if (url.username !== '' || url.password !== '') throw bad(field, `"${value}" must not carry credentials`)
  if (url.hostname === '') throw bad(field, `"${value}" has no host`)
  if ((url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.hash !== '') throw bad(field, `"${value}" must be only scheme://host:port`)
  return url.origin
}

function parseDomainName (value: unknown, field: string): string {
  if (typeof value !== 'string') throw bad(field, 'must be a string')
  const problem = hostnameProblem(value)
  if (problem !== undefined) throw bad(field, problem)
  return value
}

function domainList (value: unknown, field: string): unknown[] {
  if (!Array.isArray(value)) throw bad(field, 'is required and must be an array')
  if (value.length > MAX_DOMAINS) throw bad(field, `has ${value.length} entries (at most ${MAX_DOMAINS})`)
  return value
}

/** Parses `POST /chain/v1/register`: `{ name, child_url, domains: [{ domain, rate_profile?, redirect_to_https? }] }`. */
export function parseRegisterRequest (body: unknown): RegisterRequest {
  const o = object(body, ['name', 'child_url', 'domains'])
  const name = parseChildName(o.name)
  const childUrl = parseChildUrl(o.child_url)
  const seen = new Set<string>()
  const domains = domainList(o.domains, 'domains').map((item, i): ChainDomain => {
    const field = `domains[${i}]`
    const d = object(item, ['domain', 'rate_profile', 'redirect_to_https'], field)
    const domain = parseDomainName(d.domain, `${field}.domain`)
    if (seen.has(domain)) throw bad(`${field}.domain`, `"${domain}" is listed twice`)
    seen.add(domain)
    if (d.redirect_to_https !== undefined && typeof d.redirect_to_https !== 'boolean') throw bad(`${field}.redirect_to_https`, 'must be true or false')
    const redirect = d.redirect_to_https === true ? { redirectToHttps: true as const } : {}
    if (d.rate_profile === undefined || d.rate_profile === null || d.rate_profile === '') return { domain, ...redirect }
    if (typeof d.rate_profile !== 'string' || !PROFILE_NAME.test(d.rate_profile)) throw bad(`${field}.rate_profile`, 'must be a profile name (letters, digits, "_", "." and "-", 1-64 characters)')
    return { domain, rateProfile: d.rate_profile, ...redirect }
  })
  return { name, childUrl, domains }
}

/** Parses `POST /chain/v1/check`: `{ name, domains: ["a.example.com"] }`. */
export function parseCheckRequest (body: unknown): CheckRequest {
  const o = object(body, ['name', 'domains'])
  const name = parseChildName(o.name)
  const domains = domainList(o.domains, 'domains').map((d, i) => parseDomainName(d, `domains[${i}]`))
  return { name, domains }
}

/** Parses `POST /chain/v1/deregister`: `{ name }`. */
export function parseDeregisterRequest (body: unknown): { name: string } {
  const o = object(body, ['name'])
  return { name: parseChildName(o.name) }
}
