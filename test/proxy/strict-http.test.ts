// Strict HTTP/1.1 parsing (RFC 9112) and slow clients: bad framing never reaches a VM.
import t from 'tap'
import net from 'node:net'
import { request } from 'undici'
import { startProxyProcess, routesDoc } from '../helpers/proxy-process.ts'
import { startBackend, rawRequest } from '../helpers/backend.ts'

t.test('bad framing, oversized headers and slow clients', async (t) => {
  const vm = await startBackend(t)
  const proxy = await startProxyProcess(t, {
    routes: routesDoc([{ domain: 'app.test', target: vm.origin }]),
    toml: '[timeouts]\nrequest_headers = "1s"\n[limits]\nmax_header_bytes = 8192'
  })
  const port = proxy.ports.http

  const smuggling: Array<[string, string]> = [
    ['Content-Length with Transfer-Encoding', 'POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: app.test\r\n\r\n'],
    ['two different Content-Lengths', 'POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde'],
    ['invalid chunk size', 'POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n'],
    ['obsolete line folding', 'GET / HTTP/1.1\r\nHost: app.test\r\nX-Folded: a\r\n b\r\n\r\n'],
    ['space before the colon', 'GET / HTTP/1.1\r\nHost: app.test\r\nX-Bad : 1\r\n\r\n'],
    ['no Host header', 'GET / HTTP/1.1\r\n\r\n']
  ]
  for (const [name, text] of smuggling) {
    const before = vm.requests.length
    const res = await rawRequest(port, text)
    t.match(res.data, /^HTTP\/1.1 400 /, `${name}: 400`)
    t.ok(res.closed, `${name}: connection closed`)
    // Only the CL+TE case has a valid first request boundary; nothing of it may reach the VM.
    t.equal(vm.requests.length, before, `${name}: nothing reached the VM`)
  }

  await t.test('a header block over the limit gets 431', async (t) => {
    const res = await rawRequest(port, `GET / HTTP/1.1\r\nHost: app.test\r\nX-Big: ${'a'.repeat(10_000)}\r\n\r\n`)
    t.match(res.data, /^HTTP\/1.1 431 /)
  })

  await t.test('a trickling client (slowloris) is cut at the header timeout while others are served', async (t) => {
    const sockets: net.Socket[] = []
    const closed: Array<Promise<number>> = []
    const started = Date.now()
    for (let i = 0; i < 20; i++) {
      const s = net.connect(port, '127.0.0.1')
      s.on('error', () => {})
      sockets.push(s)
      closed.push(new Promise((resolve) => s.once('close', () => { resolve(Date.now() - started) })))
      s.write('GET / HTTP/1.1\r\nHost: app.test\r\n')
    }
    // keep trickling one header line every 200 ms
    const trickle = setInterval(() => { for (const s of sockets) if (!s.destroyed) s.write('X-A: b\r\n') }, 200)
    t.teardown(() => { clearInterval(trickle); for (const s of sockets) s.destroy() })
    const ok = await request(`http://127.0.0.1:${port}/`, { headers: { host: 'app.test' } })
    t.equal(ok.statusCode, 200, 'a normal client is served meanwhile')
    await ok.body.dump()
    const times = await Promise.all(closed)
    clearInterval(trickle)
    const slowest = Math.max(...times)
    t.ok(slowest < 4000, `every trickling connection was closed (slowest after ${slowest} ms, header timeout 1 s)`)
  })
})
