/**
 * Real backend servers ("VMs") for tests, on 127.0.0.1 port 0, closed at teardown.
 */
import http from 'node:http'
import net from 'node:net'
import { createHash } from 'node:crypto'

interface Teardown { teardown (fn: () => unknown): void }

export interface Backend {
  port: number
  origin: string
  server: http.Server
  requests: Array<{ method?: string, url?: string, headers: http.IncomingHttpHeaders }>
}

/** An echo backend: answers JSON with what it received, unless `handler` answers. */
export async function startBackend (t: Teardown, handler?: http.RequestListener): Promise<Backend> {
  const requests: Backend['requests'] = []
  const server = http.createServer((req, res) => {
    requests.push({ method: req.method, url: req.url, headers: req.headers })
    if (handler !== undefined) {
      handler(req, res)
      return
    }
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = JSON.stringify({ method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString() })
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
      res.end(body)
    })
  })
  enableWebSocketEcho(server)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as net.AddressInfo).port
  t.teardown(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => { resolve() }) }))
  return { port, origin: `http://127.0.0.1:${port}`, server, requests }
}

/** A free loopback port with nothing listening (for "target down" tests). */
export async function deadPort (): Promise<number> {
  const s = net.createServer()
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))
  const port = (s.address() as net.AddressInfo).port
  await new Promise<void>((resolve) => s.close(() => { resolve() }))
  return port
}

/**
 * A minimal WebSocket echo on the backend (RFC 6455 handshake, unmasks client
 * text frames and echoes them unmasked, prefixed with "echo:"). Enough for tests.
 */
export function enableWebSocketEcho (server: http.Server): void {
  server.on('upgrade', (req, socket) => {
    const key = req.headers['sec-websocket-key']
    if (typeof key !== 'string') { socket.destroy(); return }
    const accept = createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC11B85').digest('base64')
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\nX-Seen-Real-IP: ${String(req.headers['x-real-ip'])}\r\n\r\n`)
    let buf = Buffer.alloc(0)
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk])
      while (buf.length >= 2) {
        const opcode = buf[0] & 0x0f
        let len = buf[1] & 0x7f
        let off = 2
        if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4 }
        if (len === 127) { socket.destroy(); return }
        const masked = (buf[1] & 0x80) !== 0
        const need = off + (masked ? 4 : 0) + len
        if (buf.length < need) return
        const mask = masked ? buf.subarray(off, off + 4) : undefined
        const payload = Buffer.from(buf.subarray(off + (masked ? 4 : 0), need))
        if (mask !== undefined) for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i % 4]
        buf = buf.subarray(need)
        if (opcode === 0x8) { socket.end(Buffer.from([0x88, 0x00])); return }
        if (opcode === 0x1) {
          const out = Buffer.from('echo:' + payload.toString())
          const header = out.length < 126 ? Buffer.from([0x81, out.length]) : Buffer.from([0x81, 126, out.length >> 8, out.length & 0xff])
          socket.write(Buffer.concat([header, out]))
        }
      }
    })
    socket.on('error', () => {})
  })
}

/** A raw HTTP/1.1 exchange on a fresh socket; resolves with everything read until close or timeout. */
export function rawRequest (port: number, text: string | Buffer, timeoutMs = 5000): Promise<{ data: string, closed: boolean }> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    let data = ''
    let done = false
    const finish = (closed: boolean): void => { if (done) return; done = true; clearTimeout(timer); socket.destroy(); resolve({ data, closed }) }
    const timer = setTimeout(() => { finish(false) }, timeoutMs)
    socket.setEncoding('latin1')
    socket.on('data', (c: string) => { data += c })
    socket.on('close', () => { finish(true) })
    socket.on('error', () => { finish(true) })
    socket.write(text)
  })
}

/**
 * A raw WebSocket client round trip with a chosen Host header: handshake, one
 * masked text frame, the echoed frame back. Resolves with the handshake head and the echo.
 */
export function webSocketRoundTrip (port: number, host: string, message: string, timeoutMs = 5000): Promise<{ head: string, echo: string }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1')
    const timer = setTimeout(() => { socket.destroy(); reject(new Error('websocket round trip timed out')) }, timeoutMs)
    let buf = Buffer.alloc(0)
    let head: string | undefined
    socket.on('error', (err) => { clearTimeout(timer); reject(err) })
    socket.write(`GET /ws HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`)
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk])
      if (head === undefined) {
        const end = buf.indexOf('\r\n\r\n')
        if (end === -1) return
        head = buf.subarray(0, end).toString('latin1')
        buf = buf.subarray(end + 4)
        if (!head.startsWith('HTTP/1.1 101')) { clearTimeout(timer); socket.destroy(); resolve({ head, echo: '' }); return }
        const payload = Buffer.from(message)
        const mask = Buffer.from([1, 2, 3, 4])
        const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]))
        socket.write(Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked]))
      }
      if (buf.length >= 2 && buf.length >= 2 + (buf[1] & 0x7f)) {
        const echo = buf.subarray(2, 2 + (buf[1] & 0x7f)).toString()
        clearTimeout(timer)
        socket.end(Buffer.from([0x88, 0x80, 0, 0, 0, 0]))
        resolve({ head, echo })
      }
    })
  })
}
