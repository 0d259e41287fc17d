/**
 * @module test/torture/attacks/websocket-churn
 * 5,000 WebSocket sessions through the proxy to the VM's echo, 50 at a time: each
 * upgrades, sends one frame, reads the echo, then half close cleanly (close frame,
 * wait for the VM's) and half vanish with a TCP reset. Also used by the soak.
 */
import net from 'node:net'
import type { TortureAttack } from '../types.ts'

const MASK = Buffer.from([1, 2, 3, 4])

function masked (opcode: number, payload: Buffer): Buffer {
  const body = Buffer.from(payload.map((b, i) => b ^ MASK[i % 4]))
  return Buffer.concat([Buffer.from([0x80 | opcode, 0x80 | payload.length]), MASK, body])
}

export type WsEnd = 'clean' | 'abrupt'

/**
 * One WebSocket session over the http listener; resolves with undefined on success
 * or a short reason. Bounded by `timeoutMs`.
 */
export function webSocketSession (port: number, host: string, messages: number, end: WsEnd, timeoutMs = 5000): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    let done = false
    const finish = (reason: string | undefined): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      if (reason !== undefined || end === 'abrupt') socket.resetAndDestroy()
      else socket.destroy()
      resolve(reason)
    }
    const timer = setTimeout(() => { finish(head === undefined ? 'handshake timeout' : 'echo timeout') }, timeoutMs)
    let buf = Buffer.alloc(0)
    let head: string | undefined
    let echoed = 0
    let closing = false
    socket.on('error', (err) => { finish(closing ? undefined : (err as NodeJS.ErrnoException).code ?? err.message) })
    socket.on('close', () => { finish(closing ? undefined : head === undefined ? 'closed before the handshake' : 'closed by the proxy') })
    socket.write(`GET /ws HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`)
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk])
      if (head === undefined) {
        const at = buf.indexOf('\r\n\r\n')
        if (at === -1) return
        head = buf.subarray(0, at).toString('latin1')
        buf = buf.subarray(at + 4)
        if (!head.startsWith('HTTP/1.1 101')) { finish(head.split('\r\n')[0]); return }
        socket.write(masked(0x1, Buffer.from('churn 0')))
      }
      while (buf.length >= 2 && buf.length >= 2 + (buf[1] & 0x7f)) {
        const opcode = buf[0] & 0x0f
        buf = buf.subarray(2 + (buf[1] & 0x7f))
        if (opcode === 0x8) { finish(closing ? undefined : 'close frame from the VM'); return }
        echoed++
        if (echoed < messages) { socket.write(masked(0x1, Buffer.from(`churn ${echoed}`))); continue }
        if (end === 'abrupt') { finish(undefined); return }
        closing = true
        socket.write(masked(0x8, Buffer.alloc(0)))
      }
    })
  })
}

export const websocketChurn: TortureAttack = {
  name: 'websocket-churn',
  summary: '5,000 WebSocket sessions, 50 at a time: upgrade, one echoed frame, then half closed cleanly and half reset (TCP RST)',
  async run (ctx) {
    const total = ctx.quick ? 500 : 5000
    const parallel = 50
    const reasons: Record<string, number> = {}
    let next = 0
    let ok = 0
    const worker = async (): Promise<void> => {
      while (next < total) {
        const i = next++
        const reason = await webSocketSession(ctx.stand.ports.http, ctx.stand.host, 1, i % 2 === 0 ? 'clean' : 'abrupt')
        if (reason === undefined) ok++
        else reasons[reason] = (reasons[reason] ?? 0) + 1
      }
    }
    await Promise.all(Array.from({ length: parallel }, worker))
    const failed = total - ok
    const vm = await ctx.stand.vm.stats()
    const problems = failed > 0 ? [`${failed} of ${total} WebSocket sessions failed (${Object.entries(reasons).map(([k, v]) => `${k}: ${v}`).join(', ')})`] : []
    return { stats: { sessions: total, ok, 'upgrades seen by the VM': vm.upgrades }, problems }
  }
}
