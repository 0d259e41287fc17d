/**
 * @module test/torture/attacks/soak
 * N minutes of ordinary mixed traffic at a moderate rate (keep-alive GETs, 1 MiB
 * downloads, 512 KiB uploads, WebSocket sessions) while the route file is reloaded
 * with SIGHUP every few seconds; the proxy's RSS and its heap after a forced GC are
 * sampled all along. Memory that keeps growing under steady traffic is a leak even
 * when every request succeeds.
 */
import http from 'node:http'
import type { AttackContext, TortureAttack } from '../types.ts'
import { webSocketSession } from './websocket-churn.ts'

/**
 * Heap + external memory (after a full GC) growing faster than this over the second
 * half of the soak, and by more than GROWTH_LIMIT_MIB in all, fails the row. RSS is
 * reported alongside; it follows the allocator, not only what the proxy holds.
 */
const SLOPE_LIMIT_MIB_PER_MIN = 1
const GROWTH_LIMIT_MIB = 8

/** Least-squares slope of (minutes, MiB) points, MiB per minute. */
export function slope (points: Array<[number, number]>): number {
  const n = points.length
  if (n < 2) return 0
  const mx = points.reduce((s, [x]) => s + x, 0) / n
  const my = points.reduce((s, [, y]) => s + y, 0) / n
  const sxx = points.reduce((s, [x]) => s + (x - mx) ** 2, 0)
  const sxy = points.reduce((s, [x, y]) => s + (x - mx) * (y - my), 0)
  return sxx === 0 ? 0 : sxy / sxx
}

interface Tally { ok: number, failed: number, reasons: Record<string, number> }

function tally (): Tally { return { ok: 0, failed: 0, reasons: {} } }

function count (t: Tally, reason: string | undefined): void {
  if (reason === undefined) { t.ok++; return }
  t.failed++
  t.reasons[reason] = (t.reasons[reason] ?? 0) + 1
}

function exchange (ctx: AttackContext, agent: http.Agent, method: string, path: string, body?: Buffer): Promise<string | undefined> {
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port: ctx.stand.ports.http, method, path, agent, headers: { host: ctx.stand.host, ...(body === undefined ? {} : { 'content-length': body.length }) }, timeout: 10_000 }, (res) => {
      res.resume()
      res.on('end', () => { resolve(res.statusCode === 200 ? undefined : `status ${res.statusCode ?? '?'}`) })
      res.on('error', (err) => { resolve((err as NodeJS.ErrnoException).code ?? err.message) })
    })
    req.on('timeout', () => { req.destroy(new Error('timeout')) })
    req.on('error', (err) => { resolve((err as NodeJS.ErrnoException).code ?? err.message) })
    req.end(body)
  })
}

/** Runs `step` every `everyMs` until `until`, one at a time. */
async function loop (until: number, everyMs: number, step: () => Promise<void>): Promise<void> {
  while (Date.now() < until) {
    const started = Date.now()
    await step()
    const wait = everyMs - (Date.now() - started)
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, Math.min(wait, Math.max(0, until - Date.now()))))
  }
}

export const soak: TortureAttack = {
  name: 'soak',
  summary: 'N minutes (--soak-minutes, default 10) of keep-alive GETs (20/s), 1 MiB downloads (2/s), 512 KiB uploads (2/s), WebSocket sessions (2/s) and a SIGHUP every 5 s; RSS and heap (after GC) sampled every 10 s',
  async run (ctx) {
    const minutes = ctx.quick ? 0.5 : ctx.soakMinutes
    const sampleEveryMs = ctx.quick ? 3000 : 10_000
    const started = Date.now()
    const until = started + minutes * 60_000
    const agent = new http.Agent({ keepAlive: true, maxSockets: 8 })
    const upload = Buffer.alloc(512 * 1024, 'u')
    const t = { get: tally(), download: tally(), upload: tally(), websocket: tally(), reload: tally() }
    const rssSamples: Array<[number, number]> = []
    const heldSamples: Array<[number, number]> = []
    const extra = { version: 1, routes: [...ctx.stand.baseRoutes.routes, { domain: `soak.${ctx.stand.host}`, target: ctx.stand.vm.origin }] }
    let reloads = 0
    await Promise.all([
      loop(until, 50, async () => { count(t.get, await exchange(ctx, agent, 'GET', '/')) }),
      loop(until, 500, async () => { count(t.download, await exchange(ctx, agent, 'GET', '/big?mb=1')) }),
      loop(until, 500, async () => { count(t.upload, await exchange(ctx, agent, 'POST', '/upload', upload)) }),
      loop(until, 500, async () => { count(t.websocket, await webSocketSession(ctx.stand.ports.http, ctx.stand.host, 5, 'clean', 10_000)) }),
      loop(until, 5000, async () => {
        // Alternate two tables so every reload really swaps one.
        ctx.stand.proxy.writeRoutes(++reloads % 2 === 1 ? extra : ctx.stand.baseRoutes)
        const outcome = await ctx.stand.proxy.reload().catch((err: Error) => ({ msg: err.message }))
        count(t.reload, outcome.msg === 'routes loaded' ? undefined : String(outcome.msg).slice(0, 80))
      }),
      loop(until, sampleEveryMs, async () => {
        const s = await ctx.stand.sample({ gc: true })
        const at = (Date.now() - started) / 60_000
        rssSamples.push([at, s.rssKiB / 1024])
        heldSamples.push([at, ((s.heapUsedKiB ?? 0) + (s.externalKiB ?? 0)) / 1024])
      })
    ])
    agent.destroy()
    ctx.stand.proxy.writeRoutes(ctx.stand.baseRoutes)
    await ctx.stand.proxy.reload().catch(() => {})
    const rss = rssSamples.map(([, y]) => y)
    const held = heldSamples.map(([, y]) => y)
    const secondHalf = <T>(xs: T[]): T[] => xs.slice(Math.floor(xs.length / 2))
    const lateSlope = slope(secondHalf(heldSamples))
    const growth = (held.at(-1) ?? 0) - (held[0] ?? 0)
    const problems: string[] = []
    const notes: string[] = [
      `RSS samples (MiB): ${rss.map((v) => v.toFixed(0)).join(' ')}`,
      `heap + external after a full GC (MiB): ${held.map((v) => v.toFixed(1)).join(' ')}`
    ]
    for (const [kind, v] of Object.entries(t)) {
      if (v.failed > 0) problems.push(`${kind}: ${v.failed} of ${v.ok + v.failed} failed (${Object.entries(v.reasons).map(([k, n]) => `${k}: ${n}`).join(', ')})`)
    }
    if (ctx.quick) notes.push('too short to judge memory growth (--quick)')
    else if (lateSlope > SLOPE_LIMIT_MIB_PER_MIN && growth > GROWTH_LIMIT_MIB) problems.push(`memory held after GC still growing in the second half: ${lateSlope.toFixed(2)} MiB/min (limit ${SLOPE_LIMIT_MIB_PER_MIN}), ${growth.toFixed(1)} MiB over the soak`)
    return {
      stats: {
        minutes,
        'GETs ok': t.get.ok,
        'downloads ok': t.download.ok,
        'uploads ok': t.upload.ok,
        'WebSockets ok': t.websocket.ok,
        'SIGHUP reloads ok': t.reload.ok,
        'RSS first/last/max MiB': `${rss[0]?.toFixed(0)}/${rss.at(-1)?.toFixed(0)}/${Math.max(...rss).toFixed(0)}`,
        'RSS slope MiB/min (all, second half)': `${slope(rssSamples).toFixed(2)}, ${slope(secondHalf(rssSamples)).toFixed(2)}`,
        'heap+external after GC first/last/max MiB': `${held[0]?.toFixed(1)}/${held.at(-1)?.toFixed(1)}/${Math.max(...held).toFixed(1)}`,
        'heap+external slope MiB/min (all, second half)': `${slope(heldSamples).toFixed(2)}, ${lateSlope.toFixed(2)}`
      },
      problems,
      notes
    }
  }
}
