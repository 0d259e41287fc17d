// Host routing, error pages, redirects and forwarding headers through a real proxy process.
import t from 'tap'
import { request } from 'undici'
import { startProxyProcess, routesDoc } from '../helpers/proxy-process.ts'
import { startBackend, deadPort, rawRequest } from '../helpers/backend.ts'

async function get (port: number, host: string, path = '/', headers: Record<string, string> = {}): Promise<{ status: number, headers: Record<string, unknown>, body: string }> {
  const res = await request(`http://127.0.0.1:${port}${path}`, { headers: { host, ...headers } })
  return { status: res.statusCode, headers: res.headers, body: await res.body.text() }
}

t.test('routing, errors, redirects and headers', async (t) => {
  const vm = await startBackend(t)
  const dead = await deadPort()
  const proxy = await startProxyProcess(t, {
    routes: routesDoc([
      { domain: 'app.test', target: vm.origin, vm: 'app' },
      { domain: 'down.test', target: `http://127.0.0.1:${dead}` },
      { domain: 'old.test', redirect_to: 'new.test', redirect_code: 301 },
      { domain: 'tmp.test', redirect_to: 'new.test' },
      { domain: 'r307.test', redirect_to: 'new.test', redirect_code: 307 },
      { domain: 'r308.test', redirect_to: 'new.test', redirect_code: 308 }
    ]),
    toml: '[headers]\ntrusted_proxies = ["10.0.0.0/8", "127.0.0.2"]\n[timeouts]\nconnect = "1s"'
  })
  const port = proxy.ports.http

  await t.test('a routed host reaches its VM with Host unchanged and path/query intact', async (t) => {
    const res = await get(port, 'app.test:8080', '/a/b?c=1&d=2')
    t.equal(res.status, 200)
    const seen = JSON.parse(res.body) as { url: string, headers: Record<string, string> }
    t.equal(seen.url, '/a/b?c=1&d=2')
    t.equal(seen.headers.host, 'app.test:8080', 'Host header goes to the VM unchanged')
  })

  await t.test('host matching ignores case, port and a trailing dot', async (t) => {
    t.equal((await get(port, 'APP.Test')).status, 200)
    t.equal((await get(port, 'app.test.:80')).status, 200)
  })

  await t.test('an absolute-form request target routes by its authority (RFC 9112 §3.2.2)', async (t) => {
    const res = await rawRequest(port, 'GET http://app.test/abs?x=1 HTTP/1.1\r\nHost: elsewhere.test\r\nConnection: close\r\n\r\n')
    t.match(res.data, /^HTTP\/1.1 200/)
    const seen = JSON.parse(res.data.slice(res.data.indexOf('\r\n\r\n') + 4)) as { url: string }
    t.equal(seen.url, '/abs?x=1', 'the VM gets the origin-form path')
  })

  await t.test('unknown host: 404 with the error page, not 500', async (t) => {
    const res = await get(port, 'nobody.test')
    t.equal(res.status, 404)
    t.match(res.headers['content-type'], /text\/html/)
    t.match(res.body, /404/)
    t.notMatch(res.body, /127\.0\.0\.1/)
  })

  await t.test('dead target: 502 within the connect timeout, no upstream address leaked', async (t) => {
    const started = Date.now()
    const res = await get(port, 'down.test')
    t.equal(res.status, 502)
    t.ok(Date.now() - started < 3000, 'answered quickly')
    t.match(res.body, /502/)
    t.notMatch(res.body, new RegExp(String(dead)), 'no upstream port in the page')
    t.notMatch(res.body, /ECONNREFUSED/)
  })

  await t.test('redirect_to keeps path and query, with the route code and no port', async (t) => {
    for (const [host, code] of [['old.test', 301], ['tmp.test', 302], ['r307.test', 307], ['r308.test', 308]] as const) {
      const res = await get(port, `${host}:${port}`, '/p/q?x=1')
      t.equal(res.status, code, `${host} answers ${code}`)
      t.equal(res.headers.location, 'http://new.test/p/q?x=1')
    }
  })

  await t.test('untrusted client: forwarding headers are replaced', async (t) => {
    const res = await get(port, 'app.test', '/', { 'x-forwarded-for': '6.6.6.6', 'x-real-ip': '6.6.6.6', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'evil.test', forwarded: 'for=6.6.6.6' })
    const h = (JSON.parse(res.body) as { headers: Record<string, string> }).headers
    t.equal(h['x-forwarded-for'], '127.0.0.1')
    t.equal(h['x-real-ip'], '127.0.0.1')
    t.equal(h['x-forwarded-proto'], 'http')
    t.equal(h['x-forwarded-host'], 'app.test')
    t.equal(h.forwarded, undefined)
  })

  await t.test('hop-by-hop headers and Connection-named headers are not forwarded', async (t) => {
    // A raw request: HTTP clients refuse to send arbitrary Connection tokens.
    const res = await rawRequest(port, 'GET / HTTP/1.1\r\nHost: app.test\r\nX-Secret-Hop: 1\r\nConnection: close, X-Secret-Hop\r\nProxy-Authorization: Basic x\r\nTE: trailers\r\nX-Kept: yes\r\n\r\n')
    t.match(res.data, /^HTTP\/1.1 200/)
    const h = (JSON.parse(res.data.slice(res.data.indexOf('\r\n\r\n') + 4)) as { headers: Record<string, string> }).headers
    t.equal(h['x-secret-hop'], undefined)
    t.equal(h['proxy-authorization'], undefined)
    t.equal(h.te, undefined)
    t.equal(h['x-kept'], 'yes')
  })
})

t.test('trusted proxies: X-Forwarded-For kept, peer appended, real IP taken from it', async (t) => {
  const vm = await startBackend(t)
  const proxy = await startProxyProcess(t, {
    routes: routesDoc([{ domain: 'app.test', target: vm.origin }]),
    toml: '[headers]\ntrusted_proxies = ["127.0.0.0/8"]'
  })
  const res = await get(proxy.ports.http, 'app.test', '/', { 'x-forwarded-for': '203.0.113.7, 127.0.0.5', 'x-forwarded-proto': 'https' })
  const h = (JSON.parse(res.body) as { headers: Record<string, string> }).headers
  t.equal(h['x-forwarded-for'], '203.0.113.7, 127.0.0.5, 127.0.0.1')
  t.equal(h['x-real-ip'], '203.0.113.7', 'the rightmost untrusted address is the client')
  t.equal(h['x-forwarded-proto'], 'https')
})
