// An HTTP/2 client's request body reaches the VM whether or not it carries
// Content-Length (HTTP/2 frames bodies with END_STREAM); a body-less request stays body-less.
import t from 'tap'
import http2 from 'node:http2'
import { startProxyProcess, routesDoc } from '../helpers/proxy-process.ts'
import { startBackend } from '../helpers/backend.ts'

t.test('HTTP/2 request bodies reach the VM, with or without content-length', async (t) => {
  const vm = await startBackend(t, (req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({ body: Buffer.concat(chunks).toString(), te: req.headers['transfer-encoding'] ?? null, cl: req.headers['content-length'] ?? null }))
    })
  })
  const proxy = await startProxyProcess(t, {
    routes: routesDoc([{ domain: 'app.test', target: vm.origin }]),
    listen: '[listen]\nhttp = ""\nhttps = "127.0.0.1:0"\nadmin = "127.0.0.1:0"'
  })
  const session = http2.connect(`https://127.0.0.1:${proxy.ports.https}`, { servername: 'app.test', rejectUnauthorized: false })
  t.teardown(() => session.close())
  const send = async (headers: http2.OutgoingHttpHeaders, body: string | undefined): Promise<{ body: string, te: string | null, cl: string | null }> => {
    const stream = session.request({ ':authority': 'app.test', ':path': '/echo', ...headers }, { endStream: body === undefined })
    if (body !== undefined) stream.end(body)
    let text = ''
    stream.setEncoding('utf8')
    stream.on('data', (c: string) => { text += c })
    await new Promise((resolve, reject) => { stream.on('end', resolve); stream.on('error', reject) })
    return JSON.parse(text) as { body: string, te: string | null, cl: string | null }
  }
  const chunked = await send({ ':method': 'POST' }, 'hello without length')
  t.equal(chunked.body, 'hello without length', 'a body without content-length arrives whole')
  t.equal(chunked.te, 'chunked', 'sent chunked to the HTTP/1.1 VM')
  const sized = await send({ ':method': 'POST', 'content-length': '10' }, '0123456789')
  t.equal(sized.body, '0123456789', 'a body with content-length arrives whole')
  t.equal(sized.cl, '10')
  const none = await send({ ':method': 'GET' }, undefined)
  t.equal(none.body, '', 'a GET without body stays empty')
  t.equal(none.te, null, 'and is not sent chunked')
  await proxy.stop()
})
