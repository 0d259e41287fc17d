/**
 * @module proxy/headers
 * Header rules of the forwarding hop, as named data and pure functions:
 * hop-by-hop removal (RFC 9110 §7.6.1), the X-Forwarded-* / X-Real-IP policy
 * (believed only from trusted proxies or an authenticated chain parent), and the
 * real client IP derived from it.
 */
import type { IpMatcher } from './ip-match.ts'
import { normalizeIp } from './ip-match.ts'
import { REQUEST_ID_HEADER } from './request-id.ts'
import type { ClientInfo } from './http-types.ts'

/**
 * Connection-specific headers that never cross a proxy (RFC 9110 §7.6.1, plus the
 * de-facto Keep-Alive / Proxy-Connection and HTTP/2's own HTTP2-Settings).
 */
export const HOP_BY_HOP_HEADERS: ReadonlySet<string> = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization',
  'te', 'trailer', 'transfer-encoding', 'upgrade', 'http2-settings'
])

/**
 * Headers that carry the client's identity, and the request id; replaced unless
 * the peer is trusted (the request id: see proxy/request-id.ts).
 */
export const FORWARDING_HEADERS: ReadonlySet<string> = new Set([
  'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port', 'x-real-ip', 'forwarded', REQUEST_ID_HEADER
])

/**
 * The chain's own header (proxy/chain/auth.ts): session proofs and one-time
 * WebSocket tickets between a parent and a child. It never makes a request
 * trusted by itself, and is stripped from everything forwarded to a VM.
 */
export const CHAIN_AUTH_HEADER = 'x-vmfront-chain'

/**
 * mulch-proxy's chain credential (SPEC §10): a Mulch parent adds it, with the
 * PSK itself, to every request it forwards to a child. Like CHAIN_AUTH_HEADER it
 * is stripped from everything forwarded to a VM, whoever sent it.
 */
export const MULCH_PSK_HEADER = 'mulch-psk'
/** The same, as mulch-proxy spells it on the wire. */
export const MULCH_PSK_HEADER_NAME = 'Mulch-PSK'

/** The chain credentials no VM ever receives. */
export const CHAIN_CREDENTIAL_HEADERS: ReadonlySet<string> = new Set([CHAIN_AUTH_HEADER, MULCH_PSK_HEADER])


/** Lists the tokens of a Connection header ("close, x-foo" → ['close', 'x-foo']). */
export function connectionTokens (value: string | undefined): string[] {
  if (value === undefined || value === '') return []
  return value.toLowerCase().split(',').map((t) => t.trim()).filter((t) => t !== '')
}

/**
 * Works out the client identity. From a trusted peer the incoming X-Forwarded-For
 * is kept and the peer appended; the client is the rightmost address that is not
 * itself a trusted proxy. From anyone else the incoming headers are ignored.
 */
export function resolveClient (
  peerIp: string,
  trustedPeer: boolean,
  headers: NodeJS.Dict<string | string[]>,
  ownProto: string,
  host: string,
  trustedProxies: IpMatcher,
  requestId: string
): ClientInfo {
  const peer = normalizeIp(peerIp)
  if (!trustedPeer) return { clientIp: peer, forwardedFor: peer, proto: ownProto, forwardedHost: host, requestId }
  const incoming = joinHeader(headers['x-forwarded-for'])
  const chain = incoming === '' ? [] : incoming.split(',').map((s) => s.trim()).filter((s) => s !== '')
  let clientIp = peer
  for (let i = chain.length - 1; i >= 0; i--) {
    clientIp = normalizeIp(chain[i])
    if (!trustedProxies.matches(clientIp)) break
  }
  const proto = firstToken(joinHeader(headers['x-forwarded-proto']))
  const fwdHost = firstToken(joinHeader(headers['x-forwarded-host']))
  return {
    clientIp,
    forwardedFor: incoming === '' ? peer : `${chain.join(', ')}, ${peer}`,
    proto: proto === 'http' || proto === 'https' ? proto : ownProto,
    forwardedHost: fwdHost === '' ? host : fwdHost,
    requestId
  }
}

function joinHeader (value: string | string[] | undefined): string {
  if (value === undefined) return ''
  return Array.isArray(value) ? value.join(', ') : value
}

function firstToken (value: string): string {
  const comma = value.indexOf(',')
  return (comma === -1 ? value : value.slice(0, comma)).trim().toLowerCase()
}

/**
 * Builds the flat header list sent to the VM from the client's raw headers: the
 * Host header unchanged, hop-by-hop and Connection-named headers dropped, the
 * forwarding headers replaced by ours. `Connection` may name only the client's
 * own hop-by-hop extras: it never removes Host (the VM would see its own address,
 * as the proxy's HTTP client fills in the target's) nor a header the proxy sets
 * itself (those are appended after the filter, so no token can reach them).
 */
export function upstreamHeaders (rawHeaders: readonly string[], client: ClientInfo, connection: string | undefined): string[] {
  const named = connectionTokens(connection)
  const out: string[] = []
  let authority: string | undefined
  let sawHost = false
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]
    // HTTP/2 pseudo-headers (":authority"...) are not HTTP/1.1 headers; :authority becomes Host.
    if (name.charCodeAt(0) === 58 /* : */) {
      if (name === ':authority') authority = rawHeaders[i + 1]
      continue
    }
    const lower = name.toLowerCase()
    if (lower === 'host') sawHost = true
    if (HOP_BY_HOP_HEADERS.has(lower) || FORWARDING_HEADERS.has(lower) || CHAIN_CREDENTIAL_HEADERS.has(lower)) continue
    // The client already got its 100 Continue from us; the body follows.
    if (lower === 'expect') continue
    if (named.length > 0 && lower !== 'host' && named.includes(lower)) continue
    out.push(name, rawHeaders[i + 1])
  }
  if (!sawHost && authority !== undefined) out.push('host', authority)
  out.push(
    'x-forwarded-for', client.forwardedFor,
    'x-forwarded-proto', client.proto,
    'x-forwarded-host', client.forwardedHost,
    'x-real-ip', client.clientIp,
    'x-request-id', client.requestId
  )
  return out
}

/**
 * Filters a response's raw headers (undici gives Buffers) for the client:
 * hop-by-hop and Connection-named headers are dropped.
 */
export function downstreamHeaders (rawHeaders: readonly (Buffer | string)[]): string[] {
  const out: string[] = []
  let named: string[] | undefined
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i].toString()
    const lower = name.toLowerCase()
    const value = rawHeaders[i + 1].toString('latin1')
    if (lower === 'connection') named = connectionTokens(value)
    if (HOP_BY_HOP_HEADERS.has(lower)) continue
    out.push(name, value)
  }
  if (named === undefined || named.length === 0) return out
  const filtered: string[] = []
  for (let i = 0; i < out.length; i += 2) {
    if (!named.includes(out[i].toLowerCase())) filtered.push(out[i], out[i + 1])
  }
  return filtered
}
