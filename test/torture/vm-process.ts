/**
 * @module test/torture/vm-process
 * The VM of the torture stand, run as its own process (forked by stand.ts) so that
 * an attack keeping the runner busy cannot slow the VM down and blur the numbers.
 * On 127.0.0.1 port 0:
 * - `GET /big[?mb=N]` streams N MiB (default 4) in 64 KiB chunks, honouring backpressure;
 * - `POST /upload` reads the body and answers its length;
 * - anything else answers `ok`;
 * - WebSocket upgrades get the echo of test/helpers/backend.ts, which answers a close
 *   frame but ignores a bare FIN, like an application that never closes its side:
 *   the proxy must not rely on the VM to let go of a tunnel whose client is gone.
 * IPC: `{ type: 'stats' }` answers the counters, `{ type: 'reset' }` zeroes them.
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { enableWebSocketEcho } from '../helpers/backend.ts'

const CHUNK = Buffer.alloc(64 * 1024, 'x')
const MIB = 1024 * 1024

let requests = 0
let upgrades = 0
let byPath: Record<string, number> = {}

function pathKey (url: string | undefined): string {
  const path = (url ?? '/').split('?')[0]
  const first = path.split('/')[1] ?? ''
  return '/' + first.slice(0, 32)
}

function streamBig (res: http.ServerResponse, bytes: number): void {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bytes })
  let left = bytes
  const pump = (): void => {
    while (left > 0) {
      const n = Math.min(left, CHUNK.length)
      left -= n
      if (!res.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) {
        res.once('drain', pump)
        return
      }
    }
    res.end()
  }
  // A client (the proxy) that goes away mid-body must not leave a pending drain.
  res.on('close', () => { left = 0; res.removeListener('drain', pump) })
  pump()
}

const server = http.createServer({ keepAliveTimeout: 30_000 }, (req, res) => {
  requests++
  const key = pathKey(req.url)
  byPath[key] = (byPath[key] ?? 0) + 1
  req.on('error', () => {})
  res.on('error', () => {})
  if (key === '/big') {
    const mb = Number(new URL(req.url ?? '/', 'http://vm').searchParams.get('mb') ?? '4')
    req.resume()
    streamBig(res, Math.round((Number.isFinite(mb) && mb > 0 && mb <= 64 ? mb : 4) * MIB))
    return
  }
  if (req.method === 'POST' || req.method === 'PUT') {
    let length = 0
    req.on('data', (c: Buffer) => { length += c.length })
    req.on('end', () => { res.end(JSON.stringify({ length })) })
    return
  }
  req.resume()
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 3 })
  res.end('ok\n')
})
server.on('upgrade', () => { upgrades++ })
enableWebSocketEcho(server)
server.on('clientError', (_err, socket) => { socket.destroy() })

process.on('message', (msg: { type?: string, id?: number }) => {
  if (msg.type === 'stats') {
    server.getConnections((_err, connections) => {
      process.send?.({ type: 'stats', id: msg.id, stats: { requests, upgrades, byPath, connections } })
    })
  } else if (msg.type === 'reset') {
    requests = 0
    upgrades = 0
    byPath = {}
    process.send?.({ type: 'reset', id: msg.id })
  }
})
// The runner going away (even by SIGKILL) closes the IPC channel: follow it.
process.on('disconnect', () => { process.exit(0) })

server.listen(0, '127.0.0.1', () => {
  process.send?.({ type: 'ready', port: (server.address() as AddressInfo).port })
})
