/**
 * @module proxy/ip-match
 * Matching client addresses against lists of IPs and CIDRs (trusted proxies, VIPs).
 * IPv4-mapped IPv6 addresses (::ffff:1.2.3.4) match their IPv4 form.
 */
import { BlockList, isIP } from 'node:net'

/** A compiled list of IPs and CIDRs. */
export interface IpMatcher {
  matches (ip: string): boolean
  readonly empty: boolean
}

/** Checks one entry: an IP or a CIDR. Returns an error message or undefined. */
export function ipEntryProblem (entry: string): string | undefined {
  const slash = entry.indexOf('/')
  const addr = slash === -1 ? entry : entry.slice(0, slash)
  const family = isIP(addr)
  if (family === 0) return `"${entry}" is not an IP address or CIDR`
  if (slash === -1) return undefined
  const bits = entry.slice(slash + 1)
  const max = family === 4 ? 32 : 128
  if (!/^\d{1,3}$/.test(bits) || Number(bits) > max) return `"${entry}" has an invalid prefix length (0-${max})`
  return undefined
}

/** Strips the IPv4-mapped prefix Node reports for dual-stack sockets. */
export function normalizeIp (ip: string): string {
  return ip.startsWith('::ffff:') && isIP(ip.slice(7)) === 4 ? ip.slice(7) : ip
}

/** Compiles entries already checked with ipEntryProblem. */
export function createIpMatcher (entries: readonly string[]): IpMatcher {
  const list = new BlockList()
  for (const entry of entries) {
    const slash = entry.indexOf('/')
    const addr = slash === -1 ? entry : entry.slice(0, slash)
    const type = isIP(addr) === 6 ? 'ipv6' : 'ipv4'
    if (slash === -1) list.addAddress(addr, type)
    else list.addSubnet(addr, Number(entry.slice(slash + 1)), type)
  }
  const empty = entries.length === 0
  return {
    empty,
    matches (ip: string): boolean {
      if (empty) return false
      const plain = normalizeIp(ip)
      const family = isIP(plain)
      if (family === 0) return false
      return list.check(plain, family === 6 ? 'ipv6' : 'ipv4')
    }
  }
}
