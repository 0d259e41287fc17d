// Metric names of SPEC §9, and bounded label values under a random-Host flood.
import t from 'tap'
import { Agent, request } from 'undici'
import { randomBytes } from 'node:crypto'
import { startProxyProcess, routesDoc, metricValue } from '../helpers/proxy-process.ts'
import { startBackend } from '../helpers/backend.ts'

t.test('metrics: names, labels, and no new series from random hosts', async (t) => {
  const vm = await startBackend(t)
  const proxy = await startProxyProcess(t, { routes: routesDoc([{ domain: 'm.test', target: vm.origin }, { domain: 'down.test', target: 'http://127.0.0.1:1' }]) })
  const agent = new Agent({ connections: 8 })
  t.teardown(() => agent.close())
  const hit = async (host: string, method = 'GET'): Promise<number> => {
    const res = await request(`http://127.0.0.1:${proxy.ports.http}/`, { method: method as 'GET', headers: { host }, dispatcher: agent })
    await res.body.dump()
    return res.statusCode
  }
  t.equal(await hit('m.test'), 200)
  t.equal(await hit('m.test', 'POST'), 200)
  t.equal(await hit('down.test'), 502)
  t.equal(await hit('nope.test'), 404)

  const before = await proxy.metrics()
  for (const name of ['vmfront_http_requests_total', 'vmfront_http_request_duration_seconds', 'vmfront_http_requests_in_flight', 'vmfront_upstream_errors_total', 'vmfront_routes', 'vmfront_route_reloads_total', 'vmfront_rate_limited_total', 'vmfront_certificate_expiry_timestamp_seconds', 'vmfront_acme_orders_total', 'vmfront_chain_children', 'vmfront_chain_session_resets_total', 'process_resident_memory_bytes']) {
    t.match(before, new RegExp(`# TYPE ${name} `), `${name} is exported`)
  }
  t.equal(metricValue(before, 'vmfront_http_requests_total{domain="m.test",code="200",method="GET"}'), 1)
  t.equal(metricValue(before, 'vmfront_http_requests_total{domain="m.test",code="200",method="POST"}'), 1)
  t.equal(metricValue(before, 'vmfront_http_requests_total{domain="down.test",code="502",method="GET"}'), 1)
  t.equal(metricValue(before, 'vmfront_upstream_errors_total{domain="down.test",reason="refused"}'), 1)
  t.equal(metricValue(before, 'vmfront_http_requests_total{domain="_unknown",code="404",method="GET"}'), 1)
  t.equal(metricValue(before, 'vmfront_routes'), 2)

  const seriesBefore = before.split('\n').filter((l) => l.startsWith('vmfront_')).length
  const flood = 2000
  const jobs: Array<Promise<number>> = []
  for (let i = 0; i < flood; i++) {
    const host = `${randomBytes(6).toString('hex')}.flood.test`
    jobs.push(hit(host, i % 3 === 0 ? 'GET' : 'PURGE'))
    if (jobs.length >= 32) await Promise.all(jobs.splice(0))
  }
  await Promise.all(jobs)
  const after = await proxy.metrics()
  const seriesAfter = after.split('\n').filter((l) => l.startsWith('vmfront_')).length
  t.notMatch(after, /flood\.test/, 'no random host appears in the metrics')
  t.notMatch(after, /method="PURGE"/, 'non-standard methods are folded')
  t.ok(seriesAfter - seriesBefore <= 1, `series grew by ${seriesAfter - seriesBefore} (at most the one OTHER-method series)`)
  const unknownCount = (metricValue(after, 'vmfront_http_requests_total{domain="_unknown",code="404",method="GET"}') ?? 0) +
    (metricValue(after, 'vmfront_http_requests_total{domain="_unknown",code="404",method="OTHER"}') ?? 0)
  t.equal(unknownCount, flood + 1, 'every flood request is counted under _unknown')
})

t.test('/status reports routes and the last reload', async (t) => {
  const vm = await startBackend(t)
  const proxy = await startProxyProcess(t, { routes: routesDoc([{ domain: 's.test', target: vm.origin, vm: 'web1' }]) })
  const res = await request(`http://127.0.0.1:${proxy.ports.admin}/status`)
  const status = await res.body.json() as { routes: Array<{ domain: string, vm: string }>, reload: { result: string, routes: number } }
  t.equal(status.reload.result, 'success')
  t.equal(status.reload.routes, 1)
  t.same(status.routes.map((r) => [r.domain, r.vm]), [['s.test', 'web1']])
})
