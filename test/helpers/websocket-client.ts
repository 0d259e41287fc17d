/**
 * A raw WebSocket handshake client for tests: sends any request text (absolute-form
 * targets, chosen headers), resolves with the response head, and keeps the socket
 * so the test decides when the tunnel ends (a clean close frame, or a cut).
 */
import net from 'node:net'

export interface OpenedUpgrade {
  /** The response head, status line first, without the blank line. */
  readonly head: string
  readonly status: number
  readonly socket: net.Socket
  /** Resolves when the socket is closed. */
  readonly closed: Promise<void>
  /** Sends a masked close frame and waits for the socket to close (the echo backend answers with its own). */
  close (): Promise<void>
}

/** The upgrade request for `host` (origin-form `/ws` unless `target` says otherwise), with extra header lines. */
export function upgradeRequest (host: string, target = '/ws', extraHeaders = ''): string {
  return `GET ${target} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${extraHeaders}\r\n`
}

/** Sends `text` on a fresh connection and resolves once the response head has arrived. */
export function openUpgrade (port: number, text: string, timeoutMs = 5000): Promise<OpenedUpgrade> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1')
    const closed = new Promise<void>((resolve) => { socket.once('close', () => { resolve() }) })
    const timer = setTimeout(() => { socket.destroy(); reject(new Error('no upgrade answer in time')) }, timeoutMs)
    let buf = ''
    socket.setEncoding('latin1')
    socket.on('error', (err) => { clearTimeout(timer); reject(err) })
    const onData = (chunk: string): void => {
      buf += chunk
      const end = buf.indexOf('\r\n\r\n')
      if (end === -1) return
      clearTimeout(timer)
      socket.off('data', onData)
      socket.on('data', () => {})
      const head = buf.slice(0, end)
      resolve({
        head,
        status: Number(head.slice(9, 12)),
        socket,
        closed,
        async close () {
          if (!socket.destroyed) socket.write(Buffer.from([0x88, 0x80, 0, 0, 0, 0]))
          await closed
        }
      })
    }
    socket.on('data', onData)
    socket.write(text)
  })
}
