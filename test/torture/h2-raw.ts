/**
 * @module test/torture/h2-raw
 * Raw HTTP/2 frames over TLS (ALPN h2) for floods node:http2 will not send: a client
 * that writes frames as fast as the socket takes them, with or without reading the
 * answers. Headers use only HPACK's static table and literals (RFC 7541), no state.
 */
import tls from 'node:tls'

export const FRAME = { HEADERS: 0x1, RST_STREAM: 0x3, SETTINGS: 0x4, PING: 0x6, GOAWAY: 0x7 } as const
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1')
const CANCEL = 0x8

/** One frame: 9-byte header (RFC 9113 §4.1) and payload. */
export function frame (type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(9)
  header.writeUIntBE(payload.length, 0, 3)
  header[3] = type
  header[4] = flags
  header.writeUInt32BE(streamId & 0x7fffffff, 5)
  return Buffer.concat([header, payload])
}

function literal (nameIndex: number, value: string): Buffer {
  // "Literal Header Field without Indexing — Indexed Name" (RFC 7541 §6.2.2), short values only.
  const v = Buffer.from(value, 'latin1')
  if (v.length > 126) throw new Error('literal too long for this encoder')
  return Buffer.concat([Buffer.from([nameIndex, v.length]), v])
}

/** HEADERS (END_STREAM | END_HEADERS) for `GET https://host/path`, then RST_STREAM(CANCEL): one rapid reset. */
export function getThenCancel (streamId: number, host: string, path: string): Buffer {
  const block = Buffer.concat([Buffer.from([0x82, 0x87]), literal(0x04, path), literal(0x01, host)])
  const cancel = Buffer.alloc(4)
  cancel.writeUInt32BE(CANCEL)
  return Buffer.concat([frame(FRAME.HEADERS, 0x5, streamId, block), frame(FRAME.RST_STREAM, 0, streamId, cancel)])
}

export interface RawH2 {
  socket: tls.TLSSocket
  /** GOAWAY error codes received (only while reading). */
  goaways: number[]
  /** Set once the proxy closed or reset the connection. */
  closedBy: () => string | undefined
  /** Resolves once the socket is closed. */
  closed: Promise<void>
  /** Writes, waiting for drain when the socket's buffer is full; false once the connection is gone. */
  write (data: Buffer): Promise<boolean>
}

/**
 * Connects with ALPN h2 (any certificate: the stand serves its self-signed
 * fallback) and sends the preface and an empty SETTINGS. With `read` false the
 * client never reads, so the proxy's answers pile up on its side.
 */
export function connectRawH2 (port: number, host: string, read: boolean, timeoutMs = 5000): Promise<RawH2> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ port, host: '127.0.0.1', servername: host, ALPNProtocols: ['h2'], rejectUnauthorized: false })
    const timer = setTimeout(() => { socket.destroy(); reject(new Error('h2 handshake timed out')) }, timeoutMs)
    let closedBy: string | undefined
    const goaways: number[] = []
    const closed = new Promise<void>((resolve) => socket.once('close', () => { closedBy ??= 'closed'; resolve() }))
    socket.on('error', (err) => { closedBy ??= (err as NodeJS.ErrnoException).code ?? err.message; clearTimeout(timer); reject(err) })
    socket.on('end', () => { closedBy ??= 'FIN' })
    let pending = Buffer.alloc(0)
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk])
      while (pending.length >= 9) {
        const length = pending.readUIntBE(0, 3)
        if (pending.length < 9 + length) break
        if (pending[3] === FRAME.GOAWAY && length >= 8) goaways.push(pending.readUInt32BE(13))
        pending = pending.subarray(9 + length)
      }
    })
    socket.once('secureConnect', () => {
      clearTimeout(timer)
      if (socket.alpnProtocol !== 'h2') { socket.destroy(); reject(new Error(`ALPN chose ${String(socket.alpnProtocol)}, not h2`)); return }
      if (!read) socket.pause()
      socket.write(Buffer.concat([PREFACE, frame(FRAME.SETTINGS, 0, 0)]))
      resolve({
        socket,
        goaways,
        closedBy: () => closedBy,
        closed,
        async write (data) {
          if (socket.destroyed || closedBy !== undefined) return false
          if (socket.write(data)) return true
          await new Promise<void>((resolve) => {
            const done = (): void => { socket.off('drain', done); socket.off('close', done); resolve() }
            socket.once('drain', done)
            socket.once('close', done)
          })
          return !socket.destroyed
        }
      })
    })
  })
}
