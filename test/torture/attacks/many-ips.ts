/**
 * @module test/torture/attacks/many-ips
 * A rate-limit flood from thousands of client IPs. On Linux all of 127.0.0.0/8 is
 * loopback, so binding each client socket to its own 127.x.y.z (`localAddress`)
 * gives the proxy thousands of distinct peers. Each IP sends a burst against the
 * `flood` profile (concurrency 2, burst 4, 2/s): some are delayed, some get 429.
 * Reports how many IPs the limiter tracked at the peak and after the settle time.
 */
import http from 'node:http'
import net from 'node:net'
import { pollUntil } from '../../helpers/pebble.ts'
import type { AttackContext, AttackOutcome, TortureAttack } from '../types.ts'

/** The i-th client address: 127.20.0.1 onwards, skipping .0 and .255 (127.0.0.1 is the normal client). */
export function clientAddress (i: number): string {
  const n = Math.floor(i / 254) * 256 + (i % 254) + 1
  return `127.${20 + (n >> 16)}.${(n >> 8) & 255}.${n & 255}`
}

function canBind (address: string): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer()
    server.once('error', () => { resolve(false) })
    server.listen(0, address, () => { server.close(() => { resolve(true) }) })
  })
}

function get (ctx: AttackContext, localAddress: string): Promise<number | string> {
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port: ctx.stand.ports.http, localAddress, path: '/', agent: false, headers: { host: ctx.stand.limitedHost, connection: 'close' }, timeout: 10_000 }, (res) => {
      res.resume()
      res.on('end', () => { resolve(res.statusCode ?? 0) })
      res.on('error', (err) => { resolve((err as NodeJS.ErrnoException).code ?? err.message) })
    })
    req.on('timeout', () => { req.destroy(new Error('timeout')) })
    req.on('error', (err) => { resolve((err as NodeJS.ErrnoException).code ?? err.message) })
    req.end()
  })
}

/** IPs the limiter tracks now, summed over profiles (admin /status). */
async function trackedIps (ctx: AttackContext): Promise<number> {
  const status = await ctx.stand.status()
  const limits = status.rate_limits as Array<{ trackedIps?: number }> | undefined
  return (limits ?? []).reduce((n, p) => n + (p.trackedIps ?? 0), 0)
}

export const manyIps: TortureAttack = {
  name: 'many-ips',
  summary: '5,000 client IPs (sockets bound to 127.20.x.y) each sending a burst of 8 requests, 4 at once, at a route with a rate profile',
  unavailable () {
    return process.platform === 'linux' ? undefined : 'needs Linux (all of 127.0.0.0/8 on loopback)'
  },
  async run (ctx): Promise<AttackOutcome> {
    if (!await canBind(clientAddress(0))) return { stats: {}, problems: [], skipped: `cannot bind ${clientAddress(0)} (127.0.0.0/8 not all on loopback here)` }
    const ips = ctx.quick ? 500 : 5000
    const perIp = 8
    const parallelIps = 64
    const codes: Record<string, number> = {}
    let peakTracked = 0
    let sampling = true
    const sampler = (async () => {
      while (sampling) {
        peakTracked = Math.max(peakTracked, await trackedIps(ctx).catch(() => 0))
        await new Promise((resolve) => setTimeout(resolve, 500))
      }
    })()
    let next = 0
    const worker = async (): Promise<void> => {
      while (next < ips) {
        const address = clientAddress(next++)
        // The burst: 8 requests, 4 in flight at a time, like a browser's first page view.
        for (let sent = 0; sent < perIp; sent += 4) {
          const answers = await Promise.all(Array.from({ length: Math.min(4, perIp - sent) }, () => get(ctx, address)))
          for (const code of answers) codes[String(code)] = (codes[String(code)] ?? 0) + 1
        }
      }
    }
    const started = Date.now()
    await Promise.all(Array.from({ length: parallelIps }, worker))
    sampling = false
    await sampler
    const seconds = (Date.now() - started) / 1000
    // The limiter forgets idle IPs at its sweep (every 10 s): give it two sweeps.
    let tracked = Number.NaN
    await pollUntil(async () => (tracked = await trackedIps(ctx)) === 0, 25_000, 'the limiter to forget idle IPs').catch(() => {})
    const problems = tracked > 0 ? [`the rate limiter still tracks ${tracked} IPs 25 s after the flood`] : []
    const odd = Object.keys(codes).filter((c) => c !== '200' && c !== '429')
    if (odd.length > 0) problems.push(`answers other than 200 and 429: ${odd.map((c) => `${c} × ${codes[c]}`).join(', ')}`)
    return {
      stats: {
        'client IPs': ips,
        requests: ips * perIp,
        'req/s': Math.round(ips * perIp / seconds),
        answers: Object.entries(codes).map(([c, n]) => `${c} × ${n}`).join(', '),
        'tracked IPs at peak': peakTracked,
        'tracked IPs after': tracked
      },
      problems
    }
  }
}
