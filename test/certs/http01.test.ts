// HTTP-01 responder on a real HTTP server: known tokens answered, everything else passed on.
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { createChallengeStore } from '../../certs/http01.ts'

t.test('answers tokens of orders in progress and nothing else', async (t) => {
  const store = createChallengeStore()
  const server = http.createServer((req, res) => {
    if (!store.handle(req, res)) { res.writeHead(404, { 'x-passed-on': '1' }); res.end() }
  })
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  t.teardown(() => { server.close() })
  const port = (server.address() as AddressInfo).port
  const get = async (path: string, method = 'GET'): Promise<{ status: number, body: string, type?: string, passed: boolean }> => {
    const res = await fetch(`http://127.0.0.1:${port}${path}`, { method })
    return { status: res.status, body: await res.text(), type: res.headers.get('content-type') ?? undefined, passed: res.headers.get('x-passed-on') === '1' }
  }
  store.set('tok_EN-1', 'tok_EN-1.thumbprint')
  t.same(await get('/.well-known/acme-challenge/tok_EN-1'), { status: 200, body: 'tok_EN-1.thumbprint', type: 'text/plain', passed: false })
  t.same(await get('/.well-known/acme-challenge/tok_EN-1?x=1'), { status: 200, body: 'tok_EN-1.thumbprint', type: 'text/plain', passed: false })
  t.equal((await get('/.well-known/acme-challenge/tok_EN-1', 'HEAD')).status, 200)
  t.ok((await get('/.well-known/acme-challenge/unknown')).passed, 'unknown token: passed on (a VM may run its own ACME client)')
  t.ok((await get('/.well-known/acme-challenge/tok_EN-1', 'POST')).passed, 'POST: passed on')
  t.ok((await get('/.well-known/acme-challenge/../tok_EN-1')).passed)
  t.ok((await get('/other')).passed)
  store.delete('tok_EN-1')
  t.ok((await get('/.well-known/acme-challenge/tok_EN-1')).passed, 'forgotten once the order is done')
})
