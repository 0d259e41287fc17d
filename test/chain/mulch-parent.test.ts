// A vmfront parent serves mulch-proxy children (SPEC §10, issue 11 breakages 4-5): Mulch's
// POST /domains and /domains/conflicts with Mulch-PSK on the chain API listener, one namespace
// with vmfront children, HTTP/1.1 forwarding with Mulch-PSK, no credential reaching the VM,
// persistence across a restart, and `POST /chain/forget` on the admin listener.
import t from 'tap'
import { Agent, request } from 'undici'
import { spawnSync } from 'node:child_process'
import { CLI, NODE, routesDoc } from '../helpers/proxy-process.ts'
import { startBackend, webSocketRoundTrip } from '../helpers/backend.ts'
import { PSK, api, chainStatus, respawn, startChild, startParent, until } from './chain-helpers.ts'
import { startMulchChild } from './mulch-standin.ts'

t.test('vmfront parent ↔ mulch-proxy child', async (t) => {
  const vm = await startBackend(t)
  // With workers (SPEC §12): the primary registers Mulch children, each worker forwards to them.
  const parent = await startParent(t, { routes: routesDoc([{ domain: 'own.example.com', target: vm.origin }]), workers: 2 })
  const mulchApi = `http://127.0.0.1:${parent.apiPort}`
  const mulch = await startMulchChild(t, { parentApi: mulchApi, psk: PSK, routes: { 'm1.example.com': vm.origin, 'm2.example.com': vm.origin } })
  const fromClient = new Agent({ localAddress: '127.0.0.2' })
  t.teardown(() => fromClient.close())
  const get = async (port: number, host: string, headers: Record<string, string> = {}) => {
    const res = await request(`http://127.0.0.1:${port}/p?q=1`, { dispatcher: fromClient, headers: { host, ...headers } })
    return { status: res.statusCode, headers: res.headers, body: await res.body.text() }
  }

  await t.test('Mulch-PSK is checked as mulch-proxy does: 403 Forbidden', async (t) => {
    const wrong = await mulch.register([{ Domain: 'm1.example.com' }], 'wrong-psk-wrong-psk')
    t.equal(wrong.status, 403)
    t.equal(wrong.body, 'Forbidden\n')
    const res = await fetch(`${mulchApi}/domains`, { method: 'POST', body: '{}' })
    t.equal(res.status, 403, 'no Mulch-PSK at all')
    const get = await fetch(`${mulchApi}/domains`, { headers: { 'Mulch-PSK': PSK } })
    t.equal(get.status, 405)
    t.equal(await get.text(), 'Method GET not allowed for route /domains\n')
    const bad = await fetch(`${mulchApi}/domains`, { method: 'POST', headers: { 'Mulch-PSK': PSK }, body: 'not json' })
    t.equal(bad.status, 400)
  })

  await t.test('POST /domains registers: 200 "OK", and the domains are routed to the child over HTTP/1.1 with Mulch-PSK', async (t) => {
    const ok = await mulch.register([{ Domain: 'm1.example.com' }, { Domain: 'm2.example.com', RateProfile: '' }])
    t.equal(ok.status, 200)
    t.equal(ok.body, '"OK"')
    t.match(ok.contentType, /^application\/json/)
    await parent.waitForLog((l) => l.msg === 'chain child registered' && l.protocol === 'mulch')
    const res = await until('m1 routed', async () => { const r = await get(parent.ports.http, 'm1.example.com', { 'mulch-psk': 'client-forged', 'x-vmfront-chain': 'forged', 'x-forwarded-for': '6.6.6.6', 'x-real-ip': '6.6.6.6' }); return r.status === 200 ? r : undefined })
    const atChild = mulch.seen.at(-1)!
    t.equal(atChild.httpVersion, '1.1', 'HTTP/1.1 to a Go child (no h2c)')
    t.equal(atChild.headers['mulch-psk'], PSK, 'the parent adds its Mulch-PSK, and only it')
    t.equal(atChild.headers['x-vmfront-chain'], undefined)
    t.equal(atChild.headers['x-real-ip'], '127.0.0.2')
    t.equal(atChild.headers['x-forwarded-for'], '127.0.0.2')
    t.equal(atChild.headers.host, 'm1.example.com')
    const seen = JSON.parse(res.body) as { url: string, headers: Record<string, string> }
    t.equal(seen.url, '/p?q=1')
    t.equal(seen.headers['mulch-psk'], undefined, 'no Mulch-PSK reaches the VM')
    t.equal(seen.headers['x-vmfront-chain'], undefined, 'no vmfront chain header reaches the VM')
    t.equal(seen.headers['x-real-ip'], '127.0.0.2', 'the VM sees the client in X-Real-IP')
    t.match(seen.headers['x-forwarded-for'], /^127\.0\.0\.2(,|$)/, 'and first in X-Forwarded-For')
    // Keep-alive like any upstream: sequential requests reuse the pooled HTTP/1.1 connection.
    const before = mulch.connections()
    for (let i = 0; i < 20; i++) t.equal((await get(parent.ports.http, i % 2 === 0 ? 'm1.example.com' : 'm2.example.com')).status, 200)
    t.ok(mulch.connections() - before <= 1, `20 requests opened ${mulch.connections() - before} new connection(s) to the child`)
    const status = await chainStatus(parent)
    const child = status.children.find((c: { url: string }) => c.url === mulch.url)
    t.equal(child.protocol, 'mulch')
    t.equal(child.lease_expires_at, null, 'no lease')
    t.same(child.domains, ['m1.example.com', 'm2.example.com'])
  })

  await t.test('one namespace: a vmfront child cannot take a Mulch child’s domain (409), nor the reverse', async (t) => {
    const vmfrontTry = await api(parent.api, 'register', { name: 'v1', child_url: 'http://127.0.0.1:1', domains: [{ domain: 'm1.example.com' }] })
    t.equal(vmfrontTry.status, 409)
    t.same(vmfrontTry.body.error.conflicts, [{ domain: 'm1.example.com', owner: mulch.url }])
    const v = await api(parent.api, 'register', { name: 'v1', child_url: 'http://127.0.0.2:1', domains: [{ domain: 'v1.example.com' }] })
    t.equal(v.status, 200)
    const c = await mulch.conflicts(['v1.example.com', 'own.example.com', 'm1.example.com', 'free.example.com'])
    t.equal(c.status, 200)
    t.same(JSON.parse(c.body), [{ Domain: 'v1.example.com', Owner: 'v1' }, { Domain: 'own.example.com', Owner: '(parent)' }], 'its own domain is no conflict')
    const none = await mulch.conflicts(['free.example.com'])
    t.equal(none.body, '[]')
    // A Mulch child registering a taken domain: the free ones are registered, the taken one refused.
    const taking = await mulch.register([{ Domain: 'm1.example.com' }, { Domain: 'm2.example.com' }, { Domain: 'v1.example.com' }])
    t.equal(taking.status, 409)
    t.match(taking.body, /v1\.example\.com \(v1\)/)
    t.same((await chainStatus(parent)).children.find((x: { name: string }) => x.name === 'v1').domains, ['v1.example.com'], 'the vmfront child keeps it')
    // Another Mulch child (another host) cannot take it either; its conflict owner is the host, as mulch-proxy.
    const other = await fetch(`${mulchApi}/domains/conflicts`, { method: 'POST', headers: { 'Mulch-PSK': PSK, 'Content-Type': 'application/json' }, body: JSON.stringify({ Domains: [{ Domain: 'm1.example.com', RateProfile: '' }], ForwardTo: 'http://127.0.0.9:80' }) })
    t.same(await other.json(), [{ Domain: 'm1.example.com', Owner: '127.0.0.1' }])
    await api(parent.api, 'deregister', { name: 'v1' })
  })

  await t.test('a WebSocket to a Mulch child goes over HTTP/1.1 with Mulch-PSK', async (t) => {
    // The echo backend stands for the Mulch child here: what matters is what it receives.
    const wsChild = await startBackend(t)
    const upgrades: Array<Record<string, unknown>> = []
    wsChild.server.prependListener('upgrade', (req) => { upgrades.push({ ...req.headers }) })
    const reg = await fetch(`${mulchApi}/domains`, { method: 'POST', headers: { 'Mulch-PSK': PSK, 'Content-Type': 'application/json' }, body: JSON.stringify({ Domains: [{ Domain: 'ws.example.com', RateProfile: '' }], ForwardTo: wsChild.origin }) })
    t.equal(reg.status, 200)
    const { head, echo } = await until('ws routed', async () => { const r = await webSocketRoundTrip(parent.ports.http, 'ws.example.com', 'hello mulch'); return r.head.startsWith('HTTP/1.1 101') ? r : undefined })
    t.equal(echo, 'echo:hello mulch')
    t.match(head, /X-Seen-Real-IP: 127\.0\.0\.1/i)
    t.equal(upgrades.at(-1)?.['mulch-psk'], PSK, 'the child gets the parent\'s Mulch-PSK')
    t.equal(upgrades.at(-1)?.['x-vmfront-chain'], undefined)
    await fetch(`${mulchApi}/domains`, { method: 'POST', headers: { 'Mulch-PSK': PSK, 'Content-Type': 'application/json' }, body: JSON.stringify({ Domains: [], ForwardTo: wsChild.origin }) })
    t.notOk((await chainStatus(parent)).children.some((c: { url: string }) => c.url === wsChild.origin), 'an empty list removes the child, as mulch-proxy')
  })

  await t.test('a restart keeps the Mulch child (no lease to renew)', async (t) => {
    // A vmfront child that does not renew is swept after the lease (2 s here); the Mulch child stays.
    t.equal((await api(parent.api, 'register', { name: 'v2', child_url: 'http://127.0.0.2:2', domains: [{ domain: 'v2.example.com' }] })).status, 200)
    await parent.waitForLog((l) => l.msg === 'chain lease expired: routes dropped' && l.child === 'v2')
    t.equal((await get(parent.ports.http, 'm2.example.com')).status, 200, 'still routed after a lease time')
    await parent.stop()
    const again = await respawn(t, parent)
    await again.waitForLog((l) => l.msg === 'chain registrations restored')
    const res = await until('restored route', async () => { const r = await get(again.ports.http, 'm1.example.com'); return r.status === 200 ? r : undefined })
    t.equal(res.status, 200)

    await t.test('POST /chain/forget removes it (by URL), 404 for an unknown one', async (t) => {
      const forget = async (child: string) => {
        const r = await request(`http://127.0.0.1:${again.ports.admin}/chain/forget`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ child }) })
        return { status: r.statusCode, body: await r.body.json() as any }
      }
      // `vmfront chain forget` is the operator's way to that call.
      const cli = spawnSync(NODE, [CLI, 'chain', 'forget', '--admin', `http://127.0.0.1:${again.ports.admin}`, `${mulch.url}/`], { encoding: 'utf8', timeout: 20_000 })
      t.equal(cli.status, 0, cli.stderr)
      t.equal(cli.stdout, `forgot ${mulch.url} (${mulch.url}): 2 domains m1.example.com, m2.example.com\n`)
      t.equal((await until('unrouted', async () => { const r = await get(again.ports.http, 'm1.example.com'); return r.status === 404 ? r : undefined })).status, 404)
      const unknown = await forget('nobody')
      t.equal(unknown.status, 404)
      t.match(unknown.body.error, /no chain child named or at "nobody"/)
      const again404 = await forget(mulch.url)
      t.equal(again404.status, 404, 'already gone')
      const cliMissing = spawnSync(NODE, [CLI, 'chain', 'forget', '--admin', `http://127.0.0.1:${again.ports.admin}`, 'nobody'], { encoding: 'utf8', timeout: 20_000 })
      t.equal(cliMissing.status, 1)
      t.match(cliMissing.stderr, /no chain child named or at "nobody"/)
    })
  })
})

t.test('vmfront parent ↔ vmfront child unchanged beside Mulch routes', async (t) => {
  const vm = await startBackend(t)
  const parent = await startParent(t)
  await startChild(t, { apiPort: parent.apiPort, name: 'c1', routes: routesDoc([{ domain: 'app.example.com', target: vm.origin }]) })
  await parent.waitForLog((l) => l.msg === 'chain child registered' && l.child === 'c1')
  const res = await request(`http://127.0.0.1:${parent.ports.http}/`, { headers: { host: 'app.example.com', 'mulch-psk': PSK } })
  const seen = await res.body.json() as { headers: Record<string, string> }
  t.equal(res.statusCode, 200)
  t.equal(seen.headers['mulch-psk'], undefined, 'a client’s Mulch-PSK does not cross a vmfront chain either')
  t.equal(seen.headers['x-vmfront-chain'], undefined)
  t.equal(seen.headers['x-real-ip'], '127.0.0.1')
})
