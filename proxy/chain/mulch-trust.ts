/**
 * @module proxy/chain/mulch-trust
 * Recognises the requests a mulch-proxy parent forwards to this vmfront child
 * (SPEC §10). mulch-proxy proves itself with `Mulch-PSK: <psk>`, the PSK itself,
 * on every forwarded request: a static value that anyone who once saw it (a VM
 * behind a careless hop, a log) can replay (SPEC §14). So a request is the
 * parent's only when BOTH hold:
 * - its Mulch-PSK equals the PSK (constant-time), and
 * - it comes from the parent's address: one of the addresses parent_url's host
 *   resolves to (looked up at start and at each registration).
 * Trade-off: a parent that reaches us from another address than its API's (a
 * NAT, a second interface) is not believed: its clients are then rate limited
 * here too and seen as the parent's address. Put the parent's API on the address
 * it forwards from, or list that address in headers.trusted_proxies.
 *
 * A request with a wrong Mulch-PSK, or the right one from another address, is
 * an ordinary client's (counted, logged throttled). The header never reaches a
 * VM either way: headers.ts strips it from everything forwarded.
 */
import { lookup } from 'node:dns/promises'
import { isIP } from 'node:net'
import type { ClientRequest } from '../http-types.ts'
import type { Logger } from '../log.ts'
import { normalizeIp } from '../ip-match.ts'
import { MULCH_PSK_HEADER } from '../headers.ts'
import { createLogThrottle } from '../log-throttle.ts'
import type { ChainAuth } from './auth.ts'

/** At most one line per kind of refused Mulch-PSK in this interval. */
const REFUSED_LOG_INTERVAL_MS = 10_000

export interface MulchParentTrust {
  /** True for a request of the Mulch parent; it then starts X-Forwarded-For at the client. */
  fromParent (req: ClientRequest): boolean
  /** Looks parent_url's host up again (its addresses may change). */
  refresh (): Promise<void>
  /** The addresses believed, for /status. */
  addresses (): string[]
  /** Believes these addresses (a worker: what its primary looked up). */
  adopt (addresses: readonly string[]): void
}

export interface MulchParentTrustOptions {
  auth: ChainAuth
  parentUrl: string
  logger: Logger
  onFailure: () => void
}

/**
 * The Mulch parent appended the client to X-Forwarded-For after whatever the
 * client sent, and set X-Real-Ip to the client: the VM must see the client
 * first, so what comes before it (unverifiable, the client's own) is dropped.
 */
function trimForwardedFor (req: ClientRequest): void {
  const xff = req.headers['x-forwarded-for']
  if (xff === undefined) return
  const list = (Array.isArray(xff) ? xff.join(',') : xff).split(',').map((s) => s.trim()).filter((s) => s !== '')
  if (list.length <= 1) return
  const real = req.headers['x-real-ip']
  const at = typeof real === 'string' ? list.lastIndexOf(real.trim()) : -1
  req.headers['x-forwarded-for'] = list.slice(at >= 0 ? at : list.length - 1).join(', ')
}

/** Creates the trust check; call `refresh()` once before relying on it. */
export function createMulchParentTrust (options: MulchParentTrustOptions): MulchParentTrust {
  const host = new URL(options.parentUrl).hostname.replace(/^\[|\]$/g, '')
  let believed = new Set<string>(isIP(host) !== 0 ? [normalizeIp(host)] : [])
  const refusedLog = createLogThrottle(REFUSED_LOG_INTERVAL_MS)

  function refused (kind: string, peer: string): void {
    options.onFailure()
    const suppressed = refusedLog.admit(kind)
    if (suppressed < 0) return
    const msg = kind === 'psk'
      ? 'Mulch-PSK refused: wrong value (served as an ordinary client)'
      : 'Mulch-PSK refused: not from the parent\'s address (parent_url\'s host; served as an ordinary client)'
    options.logger.warn(msg, { peer, parent_addresses: [...believed], ...(suppressed > 0 ? { suppressed } : {}) })
  }

  return {
    fromParent (req): boolean {
      const value = req.headers[MULCH_PSK_HEADER]
      if (value === undefined) return false
      const peer = normalizeIp(req.socket?.remoteAddress ?? '')
      if (!options.auth.checkPsk(value)) {
        refused('psk', peer)
        return false
      }
      if (!believed.has(peer)) {
        refused('address', peer)
        return false
      }
      // Once per request: the handler asks once, before reading the forwarding headers.
      trimForwardedFor(req)
      return true
    },
    async refresh (): Promise<void> {
      if (isIP(host) !== 0) return
      try {
        const found = await lookup(host, { all: true })
        believed = new Set(found.map((a) => normalizeIp(a.address)))
      } catch (err) {
        // Keep the last known addresses: a DNS hiccup must not untrust the parent.
        options.logger.warn('chain parent_url host did not resolve: keeping its last known addresses for Mulch-PSK requests', { host, addresses: [...believed], err })
      }
    },
    addresses: () => [...believed],
    adopt (addresses) { believed = new Set(addresses) }
  }
}
