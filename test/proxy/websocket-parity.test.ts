// WebSocket upgrades follow the same rules as requests (SPEC §14): redirects, rate
// profiles (an open WebSocket holds its concurrency slot), the in-flight gauge and the
// dump, and an upgrade the VM refuses is recorded with the VM's status, not 101.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { request } from 'undici'
import { startProxyProcess, routesDoc, metricValue } from '../helpers/proxy-process.ts'
import { startBackend, rawRequest } from '../helpers/backend.ts'
import { openUpgrade, upgradeRequest } from '../helpers/websocket-client.ts'
import { pollUntil } from '../helpers/pebble.ts'

const PROFILES = `
[headers]
trusted_proxies = ["127.0.0.1"]
[[rate_profile]]
name = "default"
[[rate_profile]]
name = "burst"
limit_burst_requests = 2
limit_requests_per_second = 0.01
[[rate_profile]]
name = "single"
concurrent_max_requests = 1
concurrent_overflow_timeout = "300ms"
`

t.test('WebSocket parity with requests', async (t) => {
  const vm = await startBackend(t)
  const refusing = await startBackend(t)
  refusing.server.removeAllListeners('upgrade')
  refusing.server.on('upgrade', (_req, socket) => {
    socket.end('HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 9\r\nConnection: close\r\n\r\nforbidden')
  })
  const proxy = await startProxyProcess(t, {
    routes: routesDoc([
      { domain: 'ws.test', target: vm.origin },
      { domain: 'secure.test', target: vm.origin, redirect_to_https: true },
      { domain: 'moved.test', redirect_to: 'new.test', redirect_code: 301 },
      { domain: 'burst.test', target: vm.origin, rate_profile: 'burst' },
      { domain: 'single.test', target: vm.origin, rate_profile: 'single' },
      { domain: 'deny.test', target: refusing.origin }
    ]),
    listen: '[listen]\nhttp = "127.0.0.1:0"\nhttps = "127.0.0.1:0"\nadmin = "127.0.0.1:0"',
    toml: PROFILES
  })
  const port = proxy.ports.http
  const from = (ip: string): string => `X-Forwarded-For: ${ip}\r\n`

  await t.test('redirect_to_https and redirect_to apply to upgrades on plain HTTP', async (t) => {
    const secure = await openUpgrade(port, upgradeRequest('secure.test', '/ws?x=1'))
    t.equal(secure.status, 308)
    t.match(secure.head, new RegExp(`\r\nLocation: https://secure\\.test:${proxy.ports.https}/ws\\?x=1\r\n`, 'i'))
    await secure.closed
    const moved = await openUpgrade(port, upgradeRequest('moved.test'))
    t.equal(moved.status, 301)
    t.match(moved.head, /\r\nLocation: http:\/\/new\.test\/ws\r\n/i)
    await moved.closed
    t.equal(metricValue(await proxy.metrics(), 'vmfront_http_requests_total{domain="secure.test",code="308",method="GET"}'), 1)
  })

  await t.test('the token bucket applies: a burst-2 profile lets 2 upgrades through, then 429', async (t) => {
    const statuses: number[] = []
    for (let i = 0; i < 6; i++) {
      const ws = await openUpgrade(port, upgradeRequest('burst.test', '/ws', from('203.0.113.1')))
      statuses.push(ws.status)
      if (ws.status === 429) t.match(ws.head, /\r\nRetry-After: \d+/i, 'with Retry-After')
      await ws.close()
    }
    t.same(statuses, [101, 101, 429, 429, 429, 429])
    t.equal(metricValue(await proxy.metrics(), 'vmfront_rate_limited_total{profile="burst"}'), 4)
  })

  await t.test('an open WebSocket holds its client IP\'s concurrency slot until it closes', async (t) => {
    const first = await openUpgrade(port, upgradeRequest('single.test', '/ws', from('203.0.113.2')))
    t.equal(first.status, 101)
    const second = await openUpgrade(port, upgradeRequest('single.test', '/ws', from('203.0.113.2')))
    t.equal(second.status, 429, 'a second one waits for the slot, then is refused')
    await second.closed
    const otherClient = await openUpgrade(port, upgradeRequest('single.test', '/ws', from('203.0.113.3')))
    t.equal(otherClient.status, 101, 'another client IP has its own slot')
    await otherClient.close()
    await first.close()
    const third = await openUpgrade(port, upgradeRequest('single.test', '/ws', from('203.0.113.2')))
    t.equal(third.status, 101, 'the slot is free once the first closed')
    await third.close()
  })

  await t.test('an open WebSocket is in flight (gauge and dump) until it closes', async (t) => {
    const gauge = async (): Promise<number | undefined> => metricValue(await proxy.metrics(), 'vmfront_http_requests_in_flight')
    const ws = await openUpgrade(port, upgradeRequest('ws.test', '/live', from('198.51.100.4')))
    t.equal(ws.status, 101)
    t.equal(await gauge(), 1, 'counted in vmfront_http_requests_in_flight')
    const res = await request(`http://127.0.0.1:${proxy.ports.admin}/debug/dump`)
    const { file } = await res.body.json() as { file: string }
    const dump = JSON.parse(readFileSync(file, 'utf8')) as { in_flight: Array<Record<string, unknown>> }
    t.match(dump.in_flight, [{ path: '/live', domain: 'ws.test', client: '198.51.100.4', method: 'GET' }], 'listed in the dump')
    const logged = proxy.logs.length
    await ws.close()
    const line = await proxy.waitForLog((l) => l.msg === 'access' && l.path === '/live', 5000, logged)
    t.equal(line.status, 101)
    await pollUntil(async () => await gauge() === 0, 5000, 'the gauge to drop')
    t.pass('no longer in flight once closed')
  })

  await t.test('an upgrade that is not a WebSocket (curl --http2 over http) is served as a request', async (t) => {
    const before = vm.requests.length
    const res = await rawRequest(port, 'GET /plain HTTP/1.1\r\nHost: ws.test\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: Upgrade, HTTP2-Settings, close\r\n\r\n')
    t.match(res.data, /^HTTP\/1.1 200 /, 'answered by the VM, not cut')
    t.equal(vm.requests.length, before + 1)
    t.equal(vm.requests.at(-1)?.headers.upgrade, undefined, 'Upgrade is hop-by-hop: not forwarded')
    t.equal(vm.requests.at(-1)?.headers['http2-settings'], undefined)
  })

  await t.test('an upgrade the VM refuses is recorded with the VM\'s status, not 101', async (t) => {
    const logged = proxy.logs.length
    const ws = await openUpgrade(port, upgradeRequest('deny.test'))
    t.equal(ws.status, 403, 'the client sees the VM\'s answer')
    await ws.closed
    const line = await proxy.waitForLog((l) => l.msg === 'access' && l.host === 'deny.test', 5000, logged)
    t.equal(line.status, 403, 'access log')
    const m = await proxy.metrics()
    t.equal(metricValue(m, 'vmfront_http_requests_total{domain="deny.test",code="403",method="GET"}'), 1, 'metrics')
    t.equal(metricValue(m, 'vmfront_http_requests_total{domain="deny.test",code="101",method="GET"}'), undefined, 'no 101 recorded')
  })
})
