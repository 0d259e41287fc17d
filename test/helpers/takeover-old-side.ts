/**
 * The old process's side of a takeover, alone (test/proxy/takeover-order.test.ts): serves
 * one listening socket for `--takeover` by the PID file given as argv[2], and, when told
 * to drain, stops accepting and then holds its event loop for `argv[3]` ms (a process
 * descheduled at the worst moment). Prints "ready PORT" once it listens.
 */
import net from 'node:net'
import { serveTakeover } from '../../proxy/takeover.ts'
import { handlePort, type ListenHandle } from '../../proxy/listen-handle.ts'

const [pidFile, holdMs] = [process.argv[2], Number(process.argv[3])]
const server = net.createServer((socket) => { socket.end('old\n') })
await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
const handle = (server as unknown as { _handle: ListenHandle })._handle
const takeover = await serveTakeover(pidFile, {
  handles: () => new Map([['http', handle]]),
  drain: () => {
    server.close()
    const until = Date.now() + holdMs
    while (Date.now() < until) { /* held: as if descheduled right after the drain began */ }
    process.stdout.write('drained\n')
    setTimeout(() => { takeover.close(); process.exit(0) }, 50)
  },
  log: () => {}
})
process.stdout.write(`ready ${handlePort(handle)}\n`)
