/**
 * @module proxy/raw-response
 * Complete HTTP/1.1 responses written on a raw socket that no ServerResponse owns:
 * parse errors, CONNECT, and upgrade requests refused or redirected before they
 * reach a VM. The socket is closed once the answer is written; a client that does
 * not read it is cut after LINGER_MS.
 */
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { ErrorPages } from './error-pages.ts'

// Not an ESM import of node:http: see server.ts.
const { STATUS_CODES } = process.getBuiltinModule('node:http')

/** How long an answer may take to reach a client that does not read, before the socket is cut. */
const LINGER_MS = 10_000

function endWith (socket: Duplex, text: string): void {
  if (!socket.writable) {
    socket.destroy()
    return
  }
  socket.end(text)
  const s = socket as Partial<Socket>
  if (typeof s.destroySoon === 'function') s.destroySoon()
  s.setTimeout?.(LINGER_MS, () => { socket.destroy() })
}

/** Writes the error page for `status` (`extraHeaders`: complete lines, each ending in CRLF) and closes. */
export function writeRawResponse (socket: Duplex, status: number, pages: ErrorPages, extraHeaders = ''): void {
  const body = pages.body(status)
  endWith(socket, `HTTP/1.1 ${status} ${pages.reason(status)}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: ${body.length}\r\n${extraHeaders}Connection: close\r\n\r\n${body.toString()}`)
}

/** Writes an empty-bodied redirect to `location` (from the parsed request: no CR/LF can occur) and closes. */
export function writeRawRedirect (socket: Duplex, code: number, location: string): void {
  endWith(socket, `HTTP/1.1 ${code} ${STATUS_CODES[code] ?? 'Redirect'}\r\nLocation: ${location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`)
}
