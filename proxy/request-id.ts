/**
 * @module proxy/request-id
 * The `X-Request-Id` of a request: kept when a trusted front (a trusted proxy, the
 * authenticated chain parent) sent a well-formed one, generated otherwise. An id from
 * anyone else is replaced, as nginx (`proxy_set_header X-Request-ID $request_id`) and
 * Envoy at the edge do: a client that picks its own id could make its requests look
 * like someone else's in the VM's logs and ours.
 *
 * A generated id is a per-generator random prefix and a counter (`9f2c…e1-1a`): about
 * 30 ns where crypto.randomUUID takes about 100 ns, and unique across workers and
 * restarts because each process draws its own 64-bit prefix.
 */
import { randomBytes } from 'node:crypto'

/** The header, as Node lower-cases it. */
export const REQUEST_ID_HEADER = 'x-request-id'

/** Longest id kept from a trusted front; a longer one is replaced. */
export const MAX_REQUEST_ID_CHARS = 200

/**
 * Whether an incoming id is kept: 1 to 200 characters of letters, digits and
 * `-_.:+/=@` (UUIDs, ULIDs, base64, Heroku's and AWS's trace ids). Everything
 * else (control characters, spaces, quotes, a comma from two joined headers) is
 * replaced, so an id is safe in a header, a log line and a shell.
 */
export function isValidRequestId (value: string): boolean {
  const n = value.length
  if (n === 0 || n > MAX_REQUEST_ID_CHARS) return false
  for (let i = 0; i < n; i++) {
    const c = value.charCodeAt(i)
    const ok = (c >= 48 && c <= 58) /* 0-9 : */ || (c >= 64 && c <= 90) /* @ A-Z */ || (c >= 97 && c <= 122) ||
      c === 45 /* - */ || c === 95 /* _ */ || c === 46 /* . */ || c === 43 /* + */ || c === 47 /* / */ || c === 61 /* = */
    if (!ok) return false
  }
  return true
}

/** Issues request ids; one per request listener. */
export class RequestIds {
  private readonly prefix = randomBytes(8).toString('hex') + '-'
  private counter = 0

  next (): string {
    return this.prefix + (this.counter++).toString(36)
  }

  /** The id to use: the incoming one from a trusted front when well-formed, else a new one. */
  resolve (incoming: string | string[] | undefined, trusted: boolean): string {
    if (trusted && typeof incoming === 'string' && isValidRequestId(incoming)) return incoming
    return this.next()
  }
}
