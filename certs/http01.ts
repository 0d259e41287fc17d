/**
 * @module certs/http01
 * The HTTP-01 challenge token store and the responder the plain-HTTP listener calls first.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'

/** RFC 8555 §8.3: the challenge path; tokens are base64url. */
export const HTTP01_PREFIX = '/.well-known/acme-challenge/'
const TOKEN = /^[A-Za-z0-9_-]{1,256}$/

/** Tokens of the orders in progress, answered by {@link ChallengeStore.handle}. */
export interface ChallengeStore {
  set (token: string, keyAuthorization: string): void
  delete (token: string): void
  /**
   * Answers `GET|HEAD /.well-known/acme-challenge/<token>` for a token of an order in progress
   * (200, text/plain, the key authorization) and returns true. Returns false, without touching
   * the response, for any other request, including unknown tokens, so the caller can route them
   * (a VM may run its own ACME client behind the proxy).
   */
  handle (req: IncomingMessage, res: ServerResponse): boolean
}

/** Creates an empty token store. */
export function createChallengeStore (): ChallengeStore {
  const tokens = new Map<string, string>()
  return {
    set (token, keyAuthorization) { tokens.set(token, keyAuthorization) },
    delete (token) { tokens.delete(token) },
    handle (req, res) {
      const url = req.url ?? ''
      if ((req.method !== 'GET' && req.method !== 'HEAD') || !url.startsWith(HTTP01_PREFIX)) return false
      const q = url.indexOf('?')
      const token = url.slice(HTTP01_PREFIX.length, q === -1 ? undefined : q)
      const keyAuthorization = TOKEN.test(token) ? tokens.get(token) : undefined
      if (keyAuthorization === undefined) return false
      const body = Buffer.from(keyAuthorization)
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length, 'cache-control': 'no-store' })
      res.end(req.method === 'HEAD' ? undefined : body)
      return true
    }
  }
}
