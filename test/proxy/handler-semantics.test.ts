// The request handler in process, behind the real listener (createListener): ACME
// challenge paths with a fake certificate manager hook, the redirect port read from the
// bound https listener at request time (443, another port, none), and the in-flight
// bookkeeping after every refusal path.
import t, { type Test } from 'tap'
import net from 'node:net'
import { startBackend, rawRequest, type Backend } from '../helpers/backend.ts'
import { openUpgrade, upgradeRequest } from '../helpers/websocket-client.ts'
import { pollUntil } from '../helpers/pebble.ts'
import { createRequestHandler, createUpgradeHandler, type ActiveRequest, type HandlerDeps } from '../../proxy/handler.ts'
import { createListener } from '../../proxy/server.ts'
import { createMetrics } from '../../proxy/metrics.ts'
import { createErrorPages } from '../../proxy/error-pages.ts'
import { createLogger } from '../../proxy/log.ts'
import { createForwarder } from '../../proxy/forward.ts'
import { createWebSocketProxy } from '../../proxy/websocket.ts'
import { createIpMatcher } from '../../proxy/ip-match.ts'
import { Router } from '../../proxy/router.ts'
import { parseRouteTable } from '../../proxy/route-table.ts'
import type { ClientResponse } from '../../proxy/http-types.ts'

interface Harness {
  deps: HandlerDeps
  vm: Backend
  /** What the https port getter answers (a test changes it between requests). */
  https: { port: number | undefined }
  /** Port of a listener whose handler serves scheme "http", and of one serving "https" (without TLS: the scheme is what matters). */
  httpPort: number
  httpsSchemePort: number
  challenges: string[]
}

async function harness (t: Test): Promise<Harness> {
  const vm = await startBackend(t)
  // Like a real WebSocket server, the VM closes its side when the proxy half-closes the tunnel.
  vm.server.on('upgrade', (_req, socket) => { socket.once('end', () => { socket.end() }) })
  const parsed = parseRouteTable({
    version: 1,
    routes: [
      { domain: 'secure.test', target: vm.origin, redirect_to_https: true },
      { domain: 'old.test', redirect_to: 'new.test', redirect_code: 302 },
      { domain: 'plain.test', target: vm.origin }
    ]
  })
  if (!parsed.ok) throw new Error('bad test routes')
  const metrics = createMetrics({ defaultMetrics: false })
  const errorPages = createErrorPages('')
  const logger = createLogger({ level: 'error', sink: { write () {}, flush () {} } })
  const forwarder = createForwarder({ connectTimeoutMs: 1000, responseTimeoutMs: 5000, idleTimeoutMs: 5000, keepAliveMs: 1000, maxConnectionsPerTarget: 8 })
  const websockets = createWebSocketProxy({ connectTimeoutMs: 1000, idleTimeoutMs: 0 })
  const https: { port: number | undefined } = { port: 8443 }
  const challenges: string[] = []
  const deps: HandlerDeps = {
    routes: { router: new Router(parsed.table.routes.map((route) => ({ domain: route.domain, route, profile: 'default' }))) },
    live: { settings: { config: undefined as never, accessLog: undefined, trustedProxies: createIpMatcher(['127.0.0.1']), errorPages, limiter: undefined as never, limiting: undefined, forwarder, websockets, listenerOptions: undefined as never } },
    metrics,
    logger,
    httpsPort: () => https.port,
    active: new Set<ActiveRequest>(),
    // A fake certificate manager: it knows one token, and leaves every other request alone.
    // A fake chain parent: requests carrying this header are the parent's.
    fromChainParent: (req) => req.headers['x-test-chain-parent'] === 'yes',
    challenge: (req, res: ClientResponse) => {
      challenges.push(req.url ?? '')
      if (req.url !== '/.well-known/acme-challenge/known-token') return false
      ;(res as import('node:http').ServerResponse).writeHead(200, { 'content-type': 'text/plain', 'content-length': 8 })
      res.end('key-auth')
      return true
    }
  }
  const options = { requestHeadersMs: 2000, clientIdleMs: 2000, maxHeaderBytes: 16384, maxRequestsPerConnection: 0 }
  const ports: number[] = []
  for (const scheme of ['http', 'https'] as const) {
    const listener = createListener('http', options, createRequestHandler(deps, scheme), createUpgradeHandler(deps, scheme), { metrics, errorPages, logger })
    ports.push(await listener.listen({ host: '127.0.0.1', port: 0 }))
    t.teardown(() => { listener.destroyAll(); listener.stopAccepting() })
  }
  t.teardown(async () => { websockets.close(); await forwarder.close() })
  return { deps, vm, https, httpPort: ports[0], httpsSchemePort: ports[1], challenges }
}

/** One request from 127.0.0.1 (trusted) or 127.0.0.2 (an ordinary client); status, Location and body. */
async function ask (port: number, target: string, host: string, options: { trusted?: boolean, headers?: string } = {}): Promise<{ status: number, location?: string, body: string }> {
  const socket = net.connect({ port, host: '127.0.0.1', localAddress: options.trusted === true ? '127.0.0.1' : '127.0.0.2' })
  let data = ''
  socket.setEncoding('latin1')
  socket.on('data', (c: string) => { data += c })
  await new Promise<void>((resolve, reject) => { socket.once('close', () => { resolve() }); socket.once('error', reject); socket.write(`GET ${target} HTTP/1.1\r\nHost: ${host}\r\n${options.headers ?? ''}Connection: close\r\n\r\n`) })
  const end = data.indexOf('\r\n\r\n')
  return { status: Number(data.slice(9, 12)), location: /\r\nlocation: ([^\r]*)/i.exec(data.slice(0, end))?.[1], body: data.slice(end + 4) }
}

t.test('ACME HTTP-01 paths: answered by the hook when it knows the token, else forwarded to the VM, never redirected', async (t) => {
  const h = await harness(t)
  const known = await ask(h.httpPort, '/.well-known/acme-challenge/known-token', 'secure.test')
  t.same([known.status, known.body], [200, 'key-auth'], 'the certificate manager answers its own token')
  const before = h.vm.requests.length
  const unknown = await ask(h.httpPort, '/.well-known/acme-challenge/someone-elses', 'secure.test')
  t.equal(unknown.status, 200, 'an unknown token is not redirected to https')
  t.equal(h.vm.requests.length, before + 1, 'it reached the VM')
  t.equal(h.vm.requests.at(-1)?.url, '/.well-known/acme-challenge/someone-elses')
  const absolute = await ask(h.httpPort, 'http://secure.test/.well-known/acme-challenge/known-token', 'elsewhere.test')
  t.same([absolute.status, absolute.body], [200, 'key-auth'], 'an absolute-form challenge reaches the hook in origin form')
  const page = await ask(h.httpPort, '/.well-known/acme-challenge', 'secure.test')
  t.equal(page.status, 308, 'the prefix needs its trailing slash: anything else is redirected as usual')
  const onHttps = await ask(h.httpsSchemePort, '/.well-known/acme-challenge/known-token', 'secure.test')
  t.equal(onHttps.status, 200)
  t.equal(h.challenges.filter((p) => p === '/.well-known/acme-challenge/known-token').length, 2, 'the hook is consulted on plain HTTP only')
})

t.test('redirect_to_https reads the https port when the redirect is built', async (t) => {
  const h = await harness(t)
  t.equal((await ask(h.httpPort, '/a?b=1', 'secure.test')).location, 'https://secure.test:8443/a?b=1')
  h.https.port = 443
  t.equal((await ask(h.httpPort, '/a?b=1', 'secure.test')).location, 'https://secure.test/a?b=1', 'no port for 443')
  h.https.port = 9443
  const viaFront = await ask(h.httpsSchemePort, '/a', 'secure.test', { trusted: true, headers: 'X-Forwarded-Proto: http\r\n' })
  t.same([viaFront.status, viaFront.location], [308, 'https://secure.test:9443/a'], 'the https listener\'s own redirects too')
  t.equal((await ask(h.httpsSchemePort, '/a', 'secure.test')).status, 200, 'an https client is served')
  t.equal((await ask(h.httpsSchemePort, '/a', 'old.test')).location, 'https://new.test/a', 'redirect_to keeps the scheme')
  const viaParent = await ask(h.httpPort, '/a', 'secure.test', { headers: 'X-Test-Chain-Parent: yes\r\nX-Forwarded-Proto: http\r\n' })
  t.equal(viaParent.status, 200, 'a chain parent\'s plain-HTTP request is served: the parent applies redirect_to_https itself, with its own port')
  h.https.port = undefined
  t.equal((await ask(h.httpPort, '/a', 'secure.test')).status, 200, 'no https listener: a direct client is served')
  const trusted = await ask(h.httpPort, '/a', 'secure.test', { trusted: true, headers: 'X-Forwarded-Proto: http\r\n' })
  t.same([trusted.status, trusted.location], [308, 'https://secure.test/a'], 'no https listener: a trusted front\'s client goes to its https')
})

t.test('nothing stays in flight after refusals, redirects, forwards and upgrades', async (t) => {
  const h = await harness(t)
  const port = h.httpPort
  const texts = [
    'GET / HTTP/1.1\r\nHost: secure.test\r\nHost: old.test\r\n\r\n',
    'OPTIONS * HTTP/1.1\r\nHost: secure.test\r\n\r\n',
    'GET / HTTP/2.0\r\nHost: secure.test\r\n\r\n',
    'GET ftp://secure.test/ HTTP/1.1\r\nHost: secure.test\r\n\r\n',
    'CONNECT secure.test:443 HTTP/1.1\r\nHost: secure.test:443\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: nobody.test\r\nConnection: close\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: old.test\r\nConnection: close\r\n\r\n',
    'GET http://secure.test/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'
  ]
  for (const text of texts) t.match((await rawRequest(port, text)).data, /^HTTP\/1.1 [1-5]\d\d /, JSON.stringify(text.split('\r\n')[0]))
  const refused = await openUpgrade(port, upgradeRequest('nobody.test'))
  t.equal(refused.status, 404)
  await refused.closed
  const redirected = await openUpgrade(port, upgradeRequest('secure.test'))
  t.equal(redirected.status, 308)
  await redirected.closed
  const open = await openUpgrade(port, upgradeRequest('plain.test'))
  t.equal(open.status, 101)
  t.equal(h.deps.active.size, 1, 'an open WebSocket is active')
  t.equal(h.deps.metrics.inFlight.value, 1, 'and in flight')
  await open.close()
  const left = await openUpgrade(port, upgradeRequest('plain.test'))
  left.socket.destroy()
  await left.closed
  await pollUntil(() => h.deps.active.size === 0 && h.deps.metrics.inFlight.value === 0, 2000, 'the last tunnel to be recorded')
  t.equal(h.deps.active.size, 0, 'the active set is empty')
  t.equal(h.deps.metrics.inFlight.value, 0, 'the in-flight gauge is back to 0')
})
