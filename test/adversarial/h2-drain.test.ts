// SIGTERM drain on the https listener: every client HTTP/2 session gets a GOAWAY at once,
// idle sessions are closed instead of waited for (even when the client never closes its
// side), and a request in flight on HTTP/2 still completes.
import t from 'tap'
import http2 from 'node:http2'
import { startProxyProcess, routesDoc, type ProxyProcess } from '../helpers/proxy-process.ts'
import { startBackend } from '../helpers/backend.ts'
import { openRawH2 } from './h2-attacks.ts'

async function start (t: Tap, handler?: Parameters<typeof startBackend>[1]): Promise<ProxyProcess> {
  const vm = await startBackend(t, handler)
  return await startProxyProcess(t, {
    routes: routesDoc([{ domain: 'vm.test', target: vm.origin }]),
    listen: '[listen]\nhttp = ""\nhttps = "127.0.0.1:0"\nadmin = "127.0.0.1:0"',
    toml: '[timeouts]\ndrain = "10s"'
  })
}
type Tap = Parameters<typeof startBackend>[0]

function connect (t: Tap, port: number): { session: http2.ClientHttp2Session, goaway: Promise<number> } {
  const session = http2.connect(`https://127.0.0.1:${port}`, { servername: 'vm.test', rejectUnauthorized: false })
  session.on('error', () => {})
  t.teardown(() => { session.destroy() })
  return { session, goaway: new Promise((resolve) => session.once('goaway', resolve)) }
}

t.test('idle HTTP/2 connections do not hold the exit (drain = 10 s)', async (t) => {
  const proxy = await start(t)
  // One raw client that never closes its side, one ordinary client that stays idle.
  const raw = await openRawH2({ port: proxy.ports.https, servername: 'vm.test', halfOpen: true })
  t.teardown(() => { raw.destroy() })
  const idle = connect(t, proxy.ports.https)
  await new Promise((resolve) => idle.session.once('remoteSettings', resolve))
  await raw.until(() => raw.outcome.bytesIn > 0, 2000)

  const started = Date.now()
  proxy.child.kill('SIGTERM')
  t.equal(await idle.goaway, http2.constants.NGHTTP2_NO_ERROR, 'the idle client got GOAWAY(NO_ERROR)')
  const code = await proxy.exited
  const elapsed = Date.now() - started
  t.equal(code, 0, 'exit 0')
  t.ok(elapsed < 2000, `exited ${elapsed} ms after SIGTERM`)
  t.equal(raw.outcome.goaway?.errorCode, 0, 'the raw client got GOAWAY(NO_ERROR) too')
})

t.test('a request in flight on HTTP/2 completes; its session gets GOAWAY at once', async (t) => {
  let release!: () => void
  let arrived!: () => void
  const inVm = new Promise<void>((resolve) => { arrived = resolve })
  const proxy = await start(t, (req, res) => {
    arrived()
    release = () => { res.end('slow done') }
  })
  const idleRaw = await openRawH2({ port: proxy.ports.https, servername: 'vm.test', halfOpen: true })
  t.teardown(() => { idleRaw.destroy() })
  const busy = connect(t, proxy.ports.https)
  const stream = busy.session.request({ ':path': '/slow', ':authority': 'vm.test' })
  let body = ''
  let status = 0
  stream.setEncoding('utf8')
  stream.on('response', (h) => { status = Number(h[':status']) })
  stream.on('data', (c: string) => { body += c })
  const ended = new Promise<void>((resolve) => { stream.on('close', resolve) })
  await inVm

  const from = proxy.logs.length
  proxy.child.kill('SIGTERM')
  await proxy.waitForLog((l) => l.msg === 'shutting down: draining', 5000, from)
  t.equal(await busy.goaway, http2.constants.NGHTTP2_NO_ERROR, 'GOAWAY while the request is in flight')
  t.equal(proxy.child.exitCode, null, 'still running while the request is in flight')
  release()
  await ended
  t.equal(status, 200)
  t.equal(body, 'slow done', 'the in-flight request was answered in full')
  const answeredAt = Date.now()
  t.equal(await proxy.exited, 0, 'exit 0')
  t.ok(Date.now() - answeredAt < 2000, `exited ${Date.now() - answeredAt} ms after the last answer, with an idle connection open`)
})
