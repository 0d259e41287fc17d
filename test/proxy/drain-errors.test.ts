// Graceful drain with an open WebSocket, the error-page template, and GET /debug/dump.
import t from 'tap'
import net from 'node:net'
import { createHash } from 'node:crypto'
import { writeFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { request } from 'undici'
import { startProxyProcess, routesDoc, tempDir } from '../helpers/proxy-process.ts'
import { startBackend, deadPort } from '../helpers/backend.ts'

/** Opens a WebSocket through the proxy and returns a function sending a text frame and reading the echo. */
async function openWebSocket (port: number, host: string): Promise<{ socket: net.Socket, echo: (text: string) => Promise<string> }> {
  const socket = net.connect(port, '127.0.0.1')
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
  socket.write(`GET / HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${createHash('sha1').update('k').digest('base64').slice(0, 22)}==\r\nSec-WebSocket-Version: 13\r\n\r\n`)
  let buf: Buffer = Buffer.alloc(0)
  let waiting: ((b: Buffer) => void) | undefined
  socket.on('data', (c: Buffer) => { buf = Buffer.concat([buf, c]); waiting?.(buf) })
  await new Promise<void>((resolve) => { waiting = (b) => { const end = b.indexOf('\r\n\r\n'); if (end !== -1) { buf = b.subarray(end + 4); waiting = undefined; resolve() } }; waiting(buf) })
  return {
    socket,
    echo: (text: string) => new Promise<string>((resolve) => {
      waiting = (b) => {
        if (b.length >= 2 && b.length >= 2 + (b[1] & 0x7f)) {
          const out = b.subarray(2, 2 + (b[1] & 0x7f)).toString()
          buf = b.subarray(2 + (b[1] & 0x7f))
          waiting = undefined
          resolve(out)
        }
      }
      const payload = Buffer.from(text)
      socket.write(Buffer.concat([Buffer.from([0x81, 0x80 | payload.length, 0, 0, 0, 0]), payload]))
    })
  }
}

t.test('SIGTERM with an open WebSocket: it keeps working until it closes, then the proxy exits 0', async (t) => {
  const vm = await startBackend(t)
  const proxy = await startProxyProcess(t, { routes: routesDoc([{ domain: 'ws.test', target: vm.origin }]), toml: '[timeouts]\ndrain = "20s"' })
  const ws = await openWebSocket(proxy.ports.http, 'ws.test')
  t.equal(await ws.echo('before'), 'echo:before')
  const from = proxy.logs.length
  proxy.child.kill('SIGTERM')
  await proxy.waitForLog((l) => l.msg === 'shutting down: draining', 5000, from)
  t.equal(await ws.echo('during'), 'echo:during', 'the WebSocket still works during the drain')
  const refused = await new Promise<boolean>((resolve) => {
    const s = net.connect(proxy.ports.http, '127.0.0.1')
    s.once('error', () => { resolve(true) })
    s.once('connect', () => { s.destroy(); resolve(false) })
  })
  t.ok(refused, 'new connections are refused while draining')
  ws.socket.end(Buffer.from([0x88, 0x80, 0, 0, 0, 0]))
  t.equal(await proxy.exited, 0)
})

t.test('a custom error-page template is used for every error status', async (t) => {
  const dir = tempDir(t)
  const template = join(dir, 'error.html')
  writeFileSync(template, '<html><body class="custom">E{{code}}: {{message}}</body></html>')
  const dead = await deadPort()
  const proxy = await startProxyProcess(t, {
    routes: routesDoc([{ domain: 'down.test', target: `http://127.0.0.1:${dead}` }]),
    toml: `[error_pages]\ntemplate = ${JSON.stringify(template)}`
  })
  const notFound = await request(`http://127.0.0.1:${proxy.ports.http}/`, { headers: { host: 'x.test' } })
  t.match(await notFound.body.text(), /class="custom">E404: /)
  const bad = await request(`http://127.0.0.1:${proxy.ports.http}/`, { headers: { host: 'down.test' } })
  const body = await bad.body.text()
  t.match(body, /E502: /)
  t.notMatch(body, String(dead), 'no upstream address in the page')
})

t.test('GET /debug/dump writes a private dump file', async (t) => {
  const proxy = await startProxyProcess(t)
  const res = await request(`http://127.0.0.1:${proxy.ports.admin}/debug/dump`)
  const { file } = await res.body.json() as { file: string }
  t.equal(statSync(file).mode & 0o777, 0o600)
})

t.test('a VM that does not answer in time gets 504, counted as a timeout', async (t) => {
  const vm = await startBackend(t, () => { /* never answers */ })
  const proxy = await startProxyProcess(t, {
    routes: routesDoc([{ domain: 'slow.test', target: vm.origin }]),
    toml: '[timeouts]\nupstream_response = "500ms"'
  })
  const started = Date.now()
  const res = await request(`http://127.0.0.1:${proxy.ports.http}/`, { headers: { host: 'slow.test' } })
  t.equal(res.statusCode, 504)
  t.match(await res.body.text(), /504/)
  t.ok(Date.now() - started < 3000, 'answered soon after the upstream response timeout')
  const m = await proxy.metrics()
  t.match(m, /vmfront_upstream_errors_total\{domain="slow.test",reason="timeout"\} 1/)
})
