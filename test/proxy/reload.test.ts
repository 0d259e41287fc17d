// Route reloads through SIGHUP: all or nothing, a storm under load, a bad file kept out.
import t from 'tap'
import { Agent, request } from 'undici'
import { startProxyProcess, routesDoc, metricValue } from '../helpers/proxy-process.ts'
import { startBackend } from '../helpers/backend.ts'

t.test('a missing route file at start is an empty table, counted as a successful load', async (t) => {
  const proxy = await startProxyProcess(t)
  const res = await request(`http://127.0.0.1:${proxy.ports.http}/`, { headers: { host: 'any.test' } })
  t.equal(res.statusCode, 404)
  await res.body.dump()
  const m = await proxy.metrics()
  t.equal(metricValue(m, 'vmfront_route_reloads_total{result="success"}'), 1)
  t.equal(metricValue(m, 'vmfront_routes'), 0)
  const health = await request(`http://127.0.0.1:${proxy.ports.admin}/healthz`)
  t.equal(health.statusCode, 200, 'healthy with an empty table')
  await health.body.dump()
})

t.test('an invalid route file keeps the previous table and counts the failure', async (t) => {
  const a = await startBackend(t)
  const proxy = await startProxyProcess(t, { routes: routesDoc([{ domain: 'a.test', target: a.origin }]) })
  const cases: Array<[string, string]> = [
    ['truncated JSON', '{"version": 1, "routes": [{"domain": "a.test", "targ'],
    ['duplicate domain', JSON.stringify(routesDoc([{ domain: 'b.test', target: a.origin }, { domain: 'b.test', target: a.origin }]))],
    ['bad redirect code', JSON.stringify(routesDoc([{ domain: 'b.test', redirect_to: 'a.test', redirect_code: 303 }]))],
    ['empty file', '']
  ]
  let failures = 0
  for (const [name, text] of cases) {
    proxy.writeRoutes(text)
    const outcome = await proxy.reload()
    failures++
    t.equal(outcome.msg, 'route reload failed: still serving the previous table', `${name}: reload refused`)
    const res = await request(`http://127.0.0.1:${proxy.ports.http}/`, { headers: { host: 'a.test' } })
    t.equal(res.statusCode, 200, `${name}: the old table still serves a.test`)
    await res.body.dump()
  }
  const problem = proxy.logs.find((l) => l.msg === 'route file problem' && l.path === '$.routes[1].domain')
  t.ok(problem, 'the duplicate was logged with its JSON path')
  const m = await proxy.metrics()
  t.equal(metricValue(m, 'vmfront_route_reloads_total{result="failure"}'), failures)
  t.equal(metricValue(m, 'vmfront_config_last_reload_successful'), 0)
  t.equal(metricValue(m, 'vmfront_routes'), 1)

  proxy.writeRoutes(routesDoc([{ domain: 'b.test', target: a.origin }]))
  t.equal((await proxy.reload()).msg, 'routes loaded')
  const gone = await request(`http://127.0.0.1:${proxy.ports.http}/`, { headers: { host: 'a.test' } })
  t.equal(gone.statusCode, 404, 'a good file replaces the table')
  await gone.body.dump()
  const m2 = await proxy.metrics()
  t.equal(metricValue(m2, 'vmfront_config_last_reload_successful'), 1)
  t.equal(metricValue(m2, 'vmfront_route_reloads_total{result="success"}'), 2)
})

t.test('a reload storm under load fails no request', async (t) => {
  const a = await startBackend(t, (req, res) => { res.end('a') })
  const b = await startBackend(t, (req, res) => { res.end('b') })
  const proxy = await startProxyProcess(t, { routes: routesDoc([{ domain: 'storm.test', target: a.origin }, { domain: 'stable.test', target: b.origin }]) })
  const agent = new Agent({ connections: 16 })
  t.teardown(() => agent.close())
  let stop = false
  let ok = 0
  const failed: string[] = []
  const worker = async (): Promise<void> => {
    while (!stop) {
      try {
        const res = await request(`http://127.0.0.1:${proxy.ports.http}/`, { headers: { host: 'storm.test' }, dispatcher: agent })
        const body = await res.body.text()
        if (res.statusCode === 200 && (body === 'a' || body === 'b')) ok++
        else failed.push(`${res.statusCode} ${body.slice(0, 40)}`)
      } catch (err) {
        failed.push((err as Error).message)
      }
    }
  }
  const workers = Array.from({ length: 8 }, worker)
  for (let i = 0; i < 40; i++) {
    // alternate the target so every reload really swaps the table
    proxy.writeRoutes(routesDoc([{ domain: 'storm.test', target: i % 2 === 0 ? b.origin : a.origin }, { domain: 'stable.test', target: b.origin }]))
    proxy.child.kill('SIGHUP')
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  await proxy.reload()
  stop = true
  await Promise.all(workers)
  t.same(failed, [], 'no request failed during 40 SIGHUPs')
  t.ok(ok > 100, `${ok} requests succeeded during the storm`)
  t.equal(proxy.child.exitCode, null, 'the proxy is still running')
})

t.test('an invalid route file at start: serving starts, /healthz says 503 until a good file is loaded', async (t) => {
  const vm = await startBackend(t)
  const proxy = await startProxyProcess(t, { routes: '{"version": 1, "routes": [{"domain": "Bad Name"}]}' as unknown })
  t.ok(proxy.logs.some((l) => l.msg === 'route file problem' && l.path === '$.routes[0].domain'), 'the problem is logged with its path')
  const health = await request(`http://127.0.0.1:${proxy.ports.admin}/healthz`)
  t.equal(health.statusCode, 503, 'not healthy without a loaded table')
  await health.body.dump()
  t.equal(metricValue(await proxy.metrics(), 'vmfront_route_reloads_total{result="failure"}'), 1)
  proxy.writeRoutes(routesDoc([{ domain: 'a.test', target: vm.origin }]))
  t.equal((await proxy.reload()).msg, 'routes loaded')
  const healthy = await request(`http://127.0.0.1:${proxy.ports.admin}/healthz`)
  t.equal(healthy.statusCode, 200)
  await healthy.body.dump()
})
