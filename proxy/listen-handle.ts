/**
 * @module proxy/listen-handle
 * Listening sockets held by one process and served by others (SPEC §12): the
 * primary binds each listener once and hands the socket to every worker, and a
 * takeover hands them to the new process. A bound handle is not polled by the
 * process that holds it: only the processes that listen on it accept.
 */
import net from 'node:net'
import { getSystemErrorName } from 'node:util'
import type { ListenAddress } from './config-schema.ts'
import type { Logger } from './log.ts'

/** libuv's TCP server handle, as node:net and child_process pass it around. */
export interface ListenHandle {
  getsockname (out: { address?: string, port?: number }): number
  close (): void
}

type CreateServerHandle = (address: string, port: number, addressType: number, fd?: number, flags?: number) => ListenHandle | number
const createServerHandle = (net as unknown as { _createServerHandle: CreateServerHandle })._createServerHandle

function bindOnce (host: string, port: number): ListenHandle {
  const result = createServerHandle(host, port, net.isIPv6(host) ? 6 : 4)
  if (typeof result === 'number') {
    const code = getSystemErrorName(result)
    throw Object.assign(new Error(`bind ${host}:${port}: ${code}`), { code, address: host, port })
  }
  // libuv keeps a bind's EADDRINUSE for listen() to report; the socket then has no port.
  if (port !== 0 && handlePort(result) !== port) {
    result.close()
    throw Object.assign(new Error(`bind ${host}:${port}: EADDRINUSE`), { code: 'EADDRINUSE', address: host, port })
  }
  return result
}

const NO_IPV6 = new Set(['EAFNOSUPPORT', 'EADDRNOTAVAIL', 'EPROTONOSUPPORT'])

/** Binds (without accepting) `address`; ":port" binds "::" dual stack, or 0.0.0.0 without IPv6. */
export function bindListenHandle (address: ListenAddress, logger: Logger, name: string): ListenHandle {
  try {
    return bindOnce(address.host, address.port)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? ''
    if (address.anyHost !== true || !NO_IPV6.has(code)) throw err
    logger.warn('no IPv6 on this host: listening on IPv4 only', { listener: name, port: address.port, reason: code })
    return bindOnce('0.0.0.0', address.port)
  }
}

/** The port a bound handle has (a port 0 learns its real one at bind). */
export function handlePort (handle: ListenHandle): number {
  const out: { port?: number } = {}
  handle.getsockname(out)
  return out.port ?? 0
}

/** Serves `server` on a handle bound elsewhere; resolves with its port. */
export function listenOnHandle (server: net.Server, handle: ListenHandle): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(handle, 4096, () => {
      server.off('error', reject)
      const info = server.address()
      resolve(typeof info === 'object' && info !== null ? info.port : 0)
    })
  })
}
