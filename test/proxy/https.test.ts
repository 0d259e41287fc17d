// The HTTPS listener: HTTP/2 and HTTP/1.1 by ALPN, self-signed fallback, redirect_to_https with the real port.
import t from 'tap'
import http2 from 'node:http2'
import tls from 'node:tls'
import { request, Agent } from 'undici'
import { startProxyProcess, routesDoc } from '../helpers/proxy-process.ts'
import { startBackend } from '../helpers/backend.ts'

t.test('https: h2 and http/1.1 by ALPN, with the Host the client asked for', async (t) => {
  const vm = await startBackend(t)
  const proxy = await startProxyProcess(t, {
    routes: routesDoc([{ domain: 'secure.test', target: vm.origin, redirect_to_https: true }]),
    listen: '[listen]\nhttp = "127.0.0.1:0"\nhttps = "127.0.0.1:0"\nadmin = "127.0.0.1:0"'
  })
  const httpsPort = proxy.ports.https
  t.ok(httpsPort > 0, 'https listener up')

  await t.test('HTTP/2 client', async (t) => {
    const session = http2.connect(`https://127.0.0.1:${httpsPort}`, { servername: 'secure.test', rejectUnauthorized: false })
    t.teardown(() => session.close())
    const stream = session.request({ ':path': '/h2?x=1', ':authority': 'secure.test', 'x-forwarded-for': '6.6.6.6' })
    let body = ''
    let status = 0
    stream.on('response', (h) => { status = Number(h[':status']) })
    stream.setEncoding('utf8')
    stream.on('data', (c: string) => { body += c })
    await new Promise((resolve) => stream.on('end', resolve))
    t.equal(status, 200)
    const seen = JSON.parse(body) as { url: string, headers: Record<string, string> }
    t.equal(seen.url, '/h2?x=1')
    t.equal(seen.headers.host, 'secure.test', ':authority becomes the Host header at the VM')
    t.equal(seen.headers['x-forwarded-proto'], 'https')
    t.equal(seen.headers['x-forwarded-for'], '127.0.0.1', 'spoofed X-Forwarded-For replaced')
    const log = await proxy.waitForLog((l) => l.msg === 'access' && l.path === '/h2?x=1')
    t.equal(log.proto, '2.0', 'served over HTTP/2')
  })

  await t.test('HTTP/1.1 client over TLS, and the self-signed fallback completes the handshake', async (t) => {
    const alpn = await new Promise<string | false | null>((resolve, reject) => {
      const s = tls.connect({ port: httpsPort, host: '127.0.0.1', servername: 'secure.test', ALPNProtocols: ['http/1.1'], rejectUnauthorized: false }, () => { resolve(s.alpnProtocol); s.destroy() })
      s.on('error', reject)
    })
    t.equal(alpn, 'http/1.1')
    const agent = new Agent({ connect: { rejectUnauthorized: false, servername: 'secure.test' } })
    t.teardown(() => agent.close())
    const res = await request(`https://127.0.0.1:${httpsPort}/h1`, { headers: { host: 'secure.test' }, dispatcher: agent })
    t.equal(res.statusCode, 200)
    const seen = await res.body.json() as { headers: Record<string, string> }
    t.equal(seen.headers['x-forwarded-proto'], 'https')
  })

  await t.test('redirect_to_https: 308 to the https listener port, keeping path and query', async (t) => {
    const res = await request(`http://127.0.0.1:${proxy.ports.http}/a/b?c=d`, { headers: { host: 'secure.test' } })
    t.equal(res.statusCode, 308)
    t.equal(res.headers.location, `https://secure.test:${httpsPort}/a/b?c=d`)
    await res.body.dump()
  })
})

t.test('https: a connection that never completes its TLS handshake is closed at the header timeout', async (t) => {
  const net = await import('node:net')
  const proxy = await startProxyProcess(t, {
    listen: '[listen]\nhttp = ""\nhttps = "127.0.0.1:0"\nadmin = "127.0.0.1:0"',
    toml: '[timeouts]\nrequest_headers = "500ms"'
  })
  const started = Date.now()
  const socket = net.connect(proxy.ports.https, '127.0.0.1')
  socket.on('error', () => {})
  socket.write(Buffer.from([0x16, 0x03, 0x01])) // the first bytes of a ClientHello, then nothing
  await new Promise((resolve) => socket.once('close', resolve))
  const elapsed = Date.now() - started
  t.ok(elapsed < 5000, `closed after ${elapsed} ms`)
})
