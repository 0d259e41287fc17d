/**
 * @module proxy/request-target
 * The request-target and Host rules of RFC 9112 §3.2, applied once at the edge
 * before routing: an absolute-form target is rewritten into origin-form with its
 * authority as the Host header (what a proxy MUST do, §3.2.2), so every forwarder
 * (VM, chain child, WebSocket) sends what the client addressed; a second Host
 * field line is a client error (§3.2). Checks are charCode loops: no regex, no URL
 * parsing on the request path.
 */
import type { IncomingMessage } from 'node:http'

/** An absolute-form target split into what a proxy forwards. */
export interface AbsoluteTarget {
  /** host[:port], as the client wrote it: the new Host header. */
  readonly authority: string
  /** The origin-form target: path (at least "/") and query. */
  readonly path: string
}

/**
 * Characters of an RFC 3986 authority without userinfo: unreserved, sub-delims,
 * ":" (port), "[" "]" (IP literal) and "%" (pct-encoded / zone id).
 */
function isAuthorityChar (c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 58) /* 0-9 : */ ||
    c === 45 || c === 46 || c === 95 || c === 126 /* - . _ ~ */ ||
    c === 91 || c === 93 || c === 37 /* [ ] % */ ||
    c === 33 || c === 36 || (c >= 38 && c <= 44) || c === 59 || c === 61 /* ! $ & ' ( ) * + , ; = */
}

/** Length of a case-insensitive "http://" or "https://" prefix of `target`, else 0. */
function schemeLength (target: string): number {
  if (target.length < 8 || (target.charCodeAt(0) | 0x20) !== 104 /* h */) return 0
  const lower = target.slice(0, 8).toLowerCase()
  if (lower === 'https://') return 8
  if (lower.startsWith('http://')) return 7
  return 0
}

/**
 * Splits an absolute-form request target (`http://host[:port]/path?query`) into
 * its authority and origin-form path. Undefined when the target is not one a
 * proxy may accept: another scheme, an empty authority, userinfo (RFC 9110
 * §4.2.4: a recipient treats it as an error), or characters an authority cannot hold.
 */
export function splitAbsoluteTarget (target: string): AbsoluteTarget | undefined {
  const start = schemeLength(target)
  if (start === 0) return undefined
  let end = start
  for (; end < target.length; end++) {
    const c = target.charCodeAt(end)
    if (c === 47 /* / */ || c === 63 /* ? */) break
    if (!isAuthorityChar(c)) return undefined
  }
  if (end === start) return undefined
  const authority = target.slice(start, end)
  if (end === target.length) return { authority, path: '/' }
  return { authority, path: target.charCodeAt(end) === 63 ? `/${target.slice(end)}` : target.slice(end) }
}

/** True for a raw header name that is "host" in any case (4 characters checked cheaply first). */
function isHostName (name: string): boolean {
  return name.length === 4 && (name === 'Host' || name === 'host' || name.toLowerCase() === 'host')
}

/** True when the raw header list carries more than one Host field line (RFC 9112 §3.2: answer 400). */
export function hasDuplicateHost (rawHeaders: readonly string[]): boolean {
  let seen = false
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (!isHostName(rawHeaders[i])) continue
    if (seen) return true
    seen = true
  }
  return false
}

/**
 * Rewrites an HTTP/1.x request with an absolute-form target in place: `url`
 * becomes the origin-form path and the Host header (parsed and raw) the target's
 * authority (RFC 9112 §3.2.2: a proxy MUST replace Host). Everything downstream
 * (routing, forwarders, access log, dump) then sees one consistent request.
 */
export function toOriginForm (req: IncomingMessage, target: AbsoluteTarget): void {
  req.url = target.path
  const raw = req.rawHeaders
  let replaced = false
  for (let i = 0; i < raw.length; i += 2) {
    if (!isHostName(raw[i])) continue
    raw[i + 1] = target.authority
    replaced = true
  }
  if (!replaced) raw.push('Host', target.authority)
  req.headers.host = target.authority
}
