/**
 * @module test/bench/tcp-load
 * The two ends of the TCP forwarding bench, as separate processes so the same
 * programs serve the direct and the proxied transfer:
 *   node test/bench/tcp-load.ts sink             listens on 127.0.0.1 (port 0), prints {"port":N},
 *                                                reads every connection to its end, then ends it
 *   node test/bench/tcp-load.ts send --port P --bytes N
 *                                                sends N bytes, waits for the sink's FIN, prints
 *                                                {"seconds":S,"cpu_seconds":C,"machine_busy_seconds":M}
 *                                                (M: every core's busy time meanwhile, /proc/stat)
 * The sender writes one immutable 256 KiB buffer over and over (no allocation per
 * write) and stops on a full socket until 'drain', so neither end does more per byte
 * than a minimal Node program must.
 */
import net from 'node:net'
import { parseArgs } from 'node:util'
import { machineBusySeconds } from '../helpers/proc-stat.ts'

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { port: { type: 'string' }, bytes: { type: 'string' } }
})

function sink (): void {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {})
    s.on('end', () => { s.end() })
    s.resume()
  })
  server.listen(0, '127.0.0.1', () => {
    process.stdout.write(JSON.stringify({ port: (server.address() as net.AddressInfo).port }) + '\n')
  })
}

function send (port: number, bytes: number): void {
  const chunk = Buffer.alloc(256 * 1024, 0x61)
  const cpuStart = process.cpuUsage()
  const busyStart = machineBusySeconds()
  const start = process.hrtime.bigint()
  const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true }, () => {
    let left = bytes
    const pump = (): void => {
      while (left > 0) {
        const n = Math.min(left, chunk.length)
        left -= n
        if (!s.write(n === chunk.length ? chunk : chunk.subarray(0, n))) { s.once('drain', pump); return }
      }
      s.end()
    }
    pump()
  })
  s.on('data', () => {})
  s.on('error', (err) => {
    process.stderr.write(`send: ${err.message}\n`)
    process.exit(1)
  })
  // The sink ends its side once it has read everything: then every byte arrived.
  s.on('end', () => {
    const seconds = Number(process.hrtime.bigint() - start) / 1e9
    const cpu = process.cpuUsage(cpuStart)
    const busy = machineBusySeconds() - busyStart
    process.stdout.write(JSON.stringify({ seconds, cpu_seconds: (cpu.user + cpu.system) / 1e6, machine_busy_seconds: busy }) + '\n')
    s.destroy()
  })
}

const mode = positionals[0]
if (mode === 'sink') {
  sink()
} else if (mode === 'send' && values.port !== undefined && values.bytes !== undefined) {
  send(Number(values.port), Number(values.bytes))
} else {
  process.stderr.write('usage: tcp-load.ts sink | send --port P --bytes N\n')
  process.exit(2)
}
