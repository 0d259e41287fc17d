// Leases with real processes: SIGTERM deregisters at once, a SIGKILLed child's routes
// go when its lease ends, and a child restarted on another port replaces its entry.
import t from 'tap'
import { routesDoc, metricValue } from '../helpers/proxy-process.ts'
import { startBackend } from '../helpers/backend.ts'
import { chainStatus, get, startChild, startParent, until } from './chain-helpers.ts'

t.test('a child that stops with SIGTERM deregisters before it exits', async (t) => {
  const vm = await startBackend(t)
  const parent = await startParent(t)
  const child = await startChild(t, { apiPort: parent.apiPort, name: 'c1', routes: routesDoc([{ domain: 'app.example.com', target: vm.origin }]) })
  await parent.waitForLog((l) => l.msg === 'chain child registered')
  t.equal((await get(parent.ports.http, 'app.example.com')).status, 200)
  const stopAt = Date.now()
  t.equal(await child.stop('SIGTERM'), 0)
  await child.waitForLog((l) => l.msg === 'chain deregistered from parent').catch(() => undefined)
  t.ok(child.logs.some((l) => l.msg === 'chain deregistered from parent'), 'the child logged its deregistration')
  await parent.waitForLog((l) => l.msg === 'chain child deregistered' && l.child === 'c1')
  const res = await get(parent.ports.http, 'app.example.com')
  t.equal(res.status, 404, 'the domain is gone at once')
  t.ok(Date.now() - stopAt < 1500, `gone ${Date.now() - stopAt} ms after SIGTERM, well within the 2 s lease`)
  t.equal(metricValue(await parent.metrics(), 'vmfront_chain_children'), 0)
})

t.test('a SIGKILLed child: requests fail fast, then its lease expires; restarted on a new port it is used', async (t) => {
  const vm = await startBackend(t)
  const parent = await startParent(t)
  const routes = routesDoc([{ domain: 'app.example.com', target: vm.origin }])
  const first = await startChild(t, { apiPort: parent.apiPort, name: 'c1', routes })
  await parent.waitForLog((l) => l.msg === 'chain child registered')
  t.equal((await get(parent.ports.http, 'app.example.com')).status, 200)

  await t.test('lease expiry removes the routes of a killed child', async (t) => {
    await first.stop('SIGKILL')
    const killedAt = Date.now()
    const down = await get(parent.ports.http, 'app.example.com')
    t.equal(down.status, 502, 'a dead child answers 502 while its lease runs')
    t.ok(down.ms < 1000, `in ${Math.round(down.ms)} ms`)
    const expired = await parent.waitForLog((l) => l.msg === 'chain lease expired: routes dropped', 5000)
    t.equal(expired.child, 'c1')
    t.same(expired.domains, ['app.example.com'])
    const after = Date.now() - killedAt
    t.ok(after < 3500, `routes dropped ${after} ms after the kill (lease 2 s)`)
    t.equal((await get(parent.ports.http, 'app.example.com')).status, 404)
    t.equal(metricValue(await parent.metrics(), 'vmfront_chain_children'), 0)
    t.same((await chainStatus(parent)).children, [])
  })

  await t.test('the same child on another port re-registers and is used', async (t) => {
    const again = await startChild(t, { apiPort: parent.apiPort, name: 'c1', routes })
    t.not(again.port, first.port)
    await until('the chained domain through the new child', async () => ((await get(parent.ports.http, 'app.example.com')).status === 200 ? true : undefined))
    const status = await chainStatus(parent)
    t.equal(status.children.length, 1)
    t.equal(status.children[0].url, `http://127.0.0.1:${again.port}`)
    // Moving while registered: the entry is replaced, not duplicated.
    const moved = await startChild(t, { apiPort: parent.apiPort, name: 'c1', routes })
    await parent.waitForLog((l) => l.msg === 'chain child moved: replacing its registration' && l.to === `http://127.0.0.1:${moved.port}`)
    await again.stop('SIGKILL')
    const res = await until('requests through the moved child', async () => {
      const r = await get(parent.ports.http, 'app.example.com')
      return r.status === 200 ? r : undefined
    })
    t.equal(res.status, 200)
    t.equal((await chainStatus(parent)).children[0].url, `http://127.0.0.1:${moved.port}`)
    const access = await moved.waitForLog((l) => l.msg === 'access' && l.proto === '2.0')
    t.equal(access.status, 200, 'the moved child served it over HTTP/2')
  })
})
