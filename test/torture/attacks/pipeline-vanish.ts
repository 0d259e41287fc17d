/**
 * @module test/torture/attacks/pipeline-vanish
 * Raw node:net: waves of connections, each pipelining 3 GETs of /big and reading
 * nothing, then destroyed; repeated for 20 s. The proxy must let go of every
 * connection to the VM those requests took (issue 9 point 1).
 */
import net from 'node:net'
import type { TortureAttack } from '../types.ts'

/** How long a wave keeps its connections before destroying them. */
const HOLD_MS = 750

export const pipelineVanish: TortureAttack = {
  name: 'pipeline-vanish',
  summary: 'raw sockets: waves of 200 connections each pipelining 3 GETs of /big, reading nothing, destroyed after 0.75 s; for 20 s',
  async run (ctx) {
    const connections = ctx.quick ? 50 : 200
    const seconds = ctx.quick ? 5 : 20
    const port = ctx.stand.ports.http
    const request = `GET /big HTTP/1.1\r\nHost: ${ctx.stand.host}\r\n\r\n`.repeat(3)
    const deadline = Date.now() + seconds * 1000
    let waves = 0
    let opened = 0
    let errors = 0
    while (Date.now() < deadline) {
      waves++
      const sockets: net.Socket[] = []
      for (let i = 0; i < connections; i++) {
        const socket = net.connect(port, '127.0.0.1')
        socket.on('error', () => { errors++ })
        socket.pause()
        socket.setNoDelay(true)
        socket.write(request)
        sockets.push(socket)
        opened++
      }
      // The wave is the attack: a fixed hold, then everyone vanishes at once.
      await new Promise((resolve) => setTimeout(resolve, HOLD_MS))
      for (const socket of sockets) socket.destroy()
    }
    const vm = await ctx.stand.vm.stats()
    return {
      stats: { waves, connections: opened, 'client socket errors': errors, 'GET /big seen by the VM': vm.byPath['/big'] ?? 0 },
      problems: []
    }
  }
}
