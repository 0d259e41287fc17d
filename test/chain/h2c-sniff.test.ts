// One plain listener, two protocols: HTTP/1.1 as before, and h2c prior knowledge for a parent.
import t from 'tap'
import http from 'node:http'
import http2 from 'node:http2'
import net from 'node:net'
import { attachH2c } from '../../proxy/chain/h2c-sniff.ts'
import { rawRequest } from '../helpers/backend.ts'
import { memoryLogger } from './chain-helpers.ts'

async function startServer (t: { teardown (fn: () => unknown): void }, firstBytesTimeoutMs = 5000) {
  const server = http.createServer({ maxHeaderSize: 4096, requireHostHeader: true }, (req, res) => {
    let bytes = 0
    req.on('data', (c: Buffer) => { bytes += c.length })
    req.on('end', () => { res.end(JSON.stringify({ version: req.httpVersion, bytes, host: req.headers.host ?? req.headers[':authority'] })) })
  })
  const h2c = attachH2c(server, { maxConcurrentStreams: 100, maxHeaderBytes: 4096, firstBytesTimeoutMs, logger: memoryLogger().logger })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as net.AddressInfo).port
  t.teardown(() => new Promise<void>((resolve) => { h2c.destroyAll(); server.closeAllConnections(); server.close(() => { resolve() }) }))
  return { server, port, h2c }
}

function h2get (session: http2.ClientHttp2Session, path: string, body?: Buffer): Promise<{ status: number, json: any }> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':method': body === undefined ? 'GET' : 'POST', ':path': path, ':authority': 'app.example.com' }, { endStream: body === undefined })
    if (body !== undefined) stream.end(body)
    let status = 0
    let text = ''
    stream.on('response', (h) => { status = Number(h[':status']) })
    stream.on('data', (c: Buffer) => { text += c.toString() })
    stream.on('end', () => { resolve({ status, json: JSON.parse(text) }) })
    stream.on('error', reject)
  })
}

t.test('HTTP/1.1 is served as before: keep-alive, bodies, pipelining, strict parsing', async (t) => {
  const { port } = await startServer(t)
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => { agent.destroy() })
  for (let i = 0; i < 3; i++) {
    const answer = await new Promise<any>((resolve, reject) => {
      const req = http.request({ port, host: '127.0.0.1', method: 'POST', path: '/', agent, headers: { host: 'app.example.com' } }, (res) => {
        let text = ''
        res.on('data', (c: Buffer) => { text += c.toString() })
        res.on('end', () => { resolve(JSON.parse(text)) })
      })
      req.on('error', reject)
      req.end(Buffer.alloc(300_000, 1))
    })
    t.same(answer, { version: '1.1', bytes: 300_000, host: 'app.example.com' })
  }
  const piped = await rawRequest(port, 'GET /a HTTP/1.1\r\nHost: a.test\r\n\r\nGET /b HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n')
  t.equal(piped.data.match(/HTTP\/1\.1 200/g)?.length, 2, 'two pipelined answers')
  const smuggle = await rawRequest(port, 'POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n')
  t.match(smuggle.data, /^HTTP\/1\.1 400/, 'CL + TE is still refused by the HTTP/1.1 parser')
  const big = await rawRequest(port, `GET / HTTP/1.1\r\nHost: a.test\r\nX-Big: ${'a'.repeat(8000)}\r\n\r\n`)
  t.match(big.data, /^HTTP\/1\.1 431/, 'the header limit still applies')
})

t.test('h2c prior knowledge reaches the same request handler, multiplexed', async (t) => {
  const { port, h2c } = await startServer(t)
  const session = http2.connect(`http://127.0.0.1:${port}`)
  t.teardown(() => { session.destroy() })
  const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => h2get(session, `/${i}`, i % 5 === 0 ? Buffer.alloc(100_000) : undefined)))
  t.equal(answers.length, 50)
  t.ok(answers.every((a) => a.status === 200 && a.json.version === '2.0' && a.json.host === 'app.example.com'))
  t.equal(answers[5].json.bytes, 100_000)
  t.equal(h2c.sessions(), 1, 'one session carried every stream')
})

t.test('a preface split across TCP segments is still recognised', async (t) => {
  const { port } = await startServer(t)
  // A relay that delivers the first chunk in two pieces, 50 ms apart.
  const relay = net.createServer((down) => {
    const up = net.connect(port, '127.0.0.1')
    let first = true
    down.on('data', (chunk: Buffer) => {
      if (first) {
        first = false
        up.write(chunk.subarray(0, 7))
        setTimeout(() => { up.write(chunk.subarray(7)) }, 50)
        return
      }
      up.write(chunk)
    })
    up.pipe(down)
    const end = (): void => { up.destroy(); down.destroy() }
    up.on('error', end); down.on('error', end); up.on('close', end); down.on('close', end)
  })
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => relay.close(() => { resolve() })))
  const session = http2.connect(`http://127.0.0.1:${(relay.address() as net.AddressInfo).port}`)
  t.teardown(() => { session.destroy() })
  const answer = await h2get(session, '/split')
  t.equal(answer.json.version, '2.0')
})

t.test('a connection that sends nothing is closed after the first-bytes timeout', async (t) => {
  const { port } = await startServer(t, 300)
  const start = Date.now()
  const silent = await rawRequest(port, Buffer.alloc(0), 5000)
  t.equal(silent.closed, true)
  t.ok(Date.now() - start < 2000, `closed in ${Date.now() - start} ms`)
})
