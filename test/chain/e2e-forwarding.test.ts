// Parent and child as real proxy processes: a chained domain reaches the child's VM over
// HTTP/2 with the client IP intact; PSK, conflicts and the conflict check; WebSockets.
import t from 'tap'
import { Agent, request } from 'undici'
import { routesDoc, metricValue } from '../helpers/proxy-process.ts'
import { startBackend, webSocketRoundTrip } from '../helpers/backend.ts'
import { api, chainStatus, startChild, startParent, until } from './chain-helpers.ts'

t.test('parent → child → VM', async (t) => {
  const vm = await startBackend(t)
  const parent = await startParent(t, { routes: routesDoc([{ domain: 'own.example.com', target: vm.origin }]) })
  const child = await startChild(t, {
    apiPort: parent.apiPort,
    name: 'c1',
    routes: routesDoc([{ domain: 'app.example.com', target: vm.origin }, { domain: 'old.example.com', redirect_to: 'app.example.com', redirect_code: 301 }])
  })
  await parent.waitForLog((l) => l.msg === 'chain child registered' && l.child === 'c1')
  // The client connects from 127.0.0.2 so it differs from the parent's own address.
  const fromClient = new Agent({ localAddress: '127.0.0.2' })
  t.teardown(() => fromClient.close())
  const get = async (host: string, path = '/', headers: Record<string, string> = {}) => {
    const res = await request(`http://127.0.0.1:${parent.ports.http}${path}`, { dispatcher: fromClient, headers: { host, ...headers } })
    return { status: res.statusCode, headers: res.headers, body: await res.body.text() }
  }

  await t.test('a chained domain reaches the VM over HTTP/2 with the client IP intact', async (t) => {
    const res = await get('app.example.com', '/a?b=1', { 'x-forwarded-for': '6.6.6.6', 'x-real-ip': '6.6.6.6' })
    t.equal(res.status, 200)
    const seen = JSON.parse(res.body) as { url: string, headers: Record<string, string> }
    t.equal(seen.url, '/a?b=1')
    t.equal(seen.headers.host, 'app.example.com', 'Host unchanged')
    t.equal(seen.headers['x-real-ip'], '127.0.0.2', 'X-Real-IP is the client, not a spoofed value')
    t.equal(seen.headers['x-forwarded-for'], '127.0.0.2, 127.0.0.1', 'X-Forwarded-For: <client>, <parent>')
    t.equal(seen.headers['x-forwarded-proto'], 'http')
    t.equal(seen.headers['x-vmfront-chain'], undefined, 'the chain token does not reach the VM')
    const access = await child.waitForLog((l) => l.msg === 'access' && l.path === '/a?b=1')
    t.equal(access.proto, '2.0', 'the child served it over HTTP/2')
    t.equal(access.client, '127.0.0.2', 'the child logs the real client')
    const parentAccess = await parent.waitForLog((l) => l.msg === 'access' && l.path === '/a?b=1')
    t.equal(parentAccess.status, 200)
  })

  await t.test('the child answers its own redirects through the chain', async (t) => {
    const res = await get('old.example.com', '/x')
    t.equal(res.status, 301)
    t.equal(res.headers.location, 'http://app.example.com/x')
  })

  await t.test('the parent keeps its own routes and reports the chain in /status and metrics', async (t) => {
    t.equal((await get('own.example.com')).status, 200)
    t.equal((await get('unknown.example.com')).status, 404)
    const status = await chainStatus(parent)
    t.equal(status.mode, 'parent')
    t.equal(status.children.length, 1)
    t.equal(status.children[0].name, 'c1')
    t.equal(status.children[0].url, `http://127.0.0.1:${child.port}`)
    t.same(status.children[0].domains, ['app.example.com', 'old.example.com'])
    t.equal(status.children[0].session.connected, true)
    t.ok(status.children[0].lease_expires_at > new Date().toISOString())
    const metrics = await parent.metrics()
    t.equal(metricValue(metrics, 'vmfront_chain_children'), 1)
    t.equal(metricValue(metrics, 'vmfront_routes'), 3, 'own route + two chained')
    const childStatus = await chainStatus(child)
    t.equal(childStatus.registered, true)
    t.equal(childStatus.lease_ttl_seconds, 2)
  })

  await t.test('a WebSocket to a chained domain reaches the VM through the child', async (t) => {
    const { head, echo } = await webSocketRoundTrip(parent.ports.http, 'app.example.com', 'hello chain')
    t.match(head, /^HTTP\/1\.1 101/)
    t.equal(echo, 'echo:hello chain')
    t.match(head, /X-Seen-Real-IP: 127\.0\.0\.1/i, 'the VM saw the real client (the test client is 127.0.0.1 here)')
  })

  await t.test('a wrong or missing PSK is refused with 401 and counted', async (t) => {
    const wrong = await api(parent.api, 'register', { name: 'evil', child_url: 'http://127.0.0.1:1', domains: [{ domain: 'evil.example.com' }] }, 'wrong-psk-wrong-psk')
    t.equal(wrong.status, 401)
    t.equal(wrong.body.error.code, 'CHAIN_UNAUTHORIZED')
    t.equal((await api(parent.api, 'status', undefined, null)).status, 401)
    t.equal(metricValue(await parent.metrics(), 'vmfront_chain_auth_failures_total'), 2)
    t.equal((await get('evil.example.com')).status, 404, 'nothing was registered')
  })

  await t.test('a conflicting registration is refused with 409, and the check endpoint reports it', async (t) => {
    const res = await api(parent.api, 'register', { name: 'c2', child_url: 'http://127.0.0.1:1', domains: [{ domain: 'new.example.com' }, { domain: 'app.example.com' }, { domain: 'own.example.com' }] })
    t.equal(res.status, 409)
    t.same(res.body.error.conflicts, [{ domain: 'app.example.com', owner: 'c1' }, { domain: 'own.example.com', owner: '(parent)' }])
    const logged = await parent.waitForLog((l) => l.msg === 'chain registration refused: domain conflict' && l.child === 'c2')
    t.same(logged.conflicts, res.body.error.conflicts, 'reported in the log')
    const check = await api(parent.api, 'check', { name: 'c2', domains: ['app.example.com', 'free.example.com'] })
    t.equal(check.status, 200)
    t.same(check.body, { conflicts: [{ domain: 'app.example.com', owner: 'c1' }] })
    t.equal((await get('app.example.com')).status, 200, 'the owner keeps serving')
  })

  await t.test('the child believes X-Forwarded-* only from the authenticated parent, never for a header', async (t) => {
    const direct = await request(`http://127.0.0.1:${child.port}/`, { headers: { host: 'app.example.com', 'x-forwarded-for': '6.6.6.6', 'x-vmfront-chain': 'f'.repeat(64) } })
    const seen = JSON.parse(await direct.body.text()) as { headers: Record<string, string> }
    t.equal(seen.headers['x-real-ip'], '127.0.0.1', 'the spoofed client IP is ignored')
    t.equal(seen.headers['x-forwarded-for'], '127.0.0.1')
    t.equal(metricValue(await child.metrics(), 'vmfront_chain_auth_failures_total'), 1, 'a wrong token is counted')
    const plain = await request(`http://127.0.0.1:${child.port}/`, { headers: { host: 'app.example.com' } })
    t.equal(plain.statusCode, 200, 'the child serves its own HTTP/1.1 clients directly')
    await plain.body.text()
  })

  await t.test('SIGHUP on the child re-registers its new routes', async (t) => {
    child.writeRoutes(routesDoc([{ domain: 'app.example.com', target: vm.origin }, { domain: 'extra.example.com', target: vm.origin }]))
    const from = child.logs.length
    await child.reload()
    await child.waitForLog((l) => l.msg === 'chain registered with parent' && l.reason === 'SIGHUP', 5000, from)
    await until('the new domain at the parent', async () => ((await get('extra.example.com')).status === 200 ? true : undefined))
    t.equal((await get('old.example.com')).status, 404, 'the dropped domain is gone from the parent')
  })
})
