// HTTP/2 rapid reset (CVE-2023-44487) on the https listener, with raw frames: streams the
// client resets before they are forwarded never reach the VM, a connection past its reset
// budget gets GOAWAY(ENHANCE_YOUR_CALM) and its TCP connection is closed even if the client
// keeps it open, and a normal client of the same VM keeps its latency.
import t from 'tap'
import { readdirSync } from 'node:fs'
import { startProxyProcess, routesDoc, metricValue } from '../helpers/proxy-process.ts'
import { startBackend } from '../helpers/backend.ts'
import { pollUntil } from '../helpers/pebble.ts'
import { H2_ERROR, normalClient, openRawH2, quantile, rapidReset, rawGet, rawGets, resetAfterDispatch, sendResetPairs, type ConnectionOutcome } from './h2-attacks.ts'

// A VM that takes 20 ms per request: 1,000 forwarded requests hold it for seconds. It holds
// /slow requests for 2 s, so the client resets those before they finish.
const vm = await startBackend(t, (req, res) => { setTimeout(() => { res.end('ok') }, req.url === '/slow' ? 2000 : 20) })
const proxy = await startProxyProcess(t, {
  routes: routesDoc([{ domain: 'vm.test', target: vm.origin }]),
  listen: '[listen]\nhttp = ""\nhttps = "127.0.0.1:0"\nadmin = "127.0.0.1:0"',
  toml: '[log]\naccess = false'
})
// Attack connections never close their side: closing them is the proxy's job.
const target = { port: proxy.ports.https, servername: 'vm.test', halfOpen: true }
const normalTarget = { ...target, halfOpen: false }
const seen = (path: string): number => vm.requests.filter((r) => r.url === path).length
const metric = async (series: string): Promise<number> => metricValue(await proxy.metrics(), series) ?? 0
const noClientConnections = (): Promise<void> => pollUntil(async () => await metric('vmfront_open_connections') === 0, 5000, 'every client connection to be closed by the proxy')
const fds = (): number => readdirSync(`/proc/${proxy.child.pid!}/fd`).length

t.test('waves of 1,000 HEADERS+RST_STREAM pairs per connection: none reach the VM, GOAWAY(ENHANCE_YOUR_CALM), nothing left open', async (t) => {
  // Warm up (TLS, the upstream pool) so the fd count compares like with like.
  await normalClient(normalTarget, '/warm-up', { requests: 1 })
  await noClientConnections()
  const fdsBefore = fds()

  let normalDone = false
  const outcomes: ConnectionOutcome[] = []
  // Back to back: the next connection opens at the previous one's GOAWAY, which is left open.
  const attacks = (async () => {
    while (!normalDone || outcomes.length < 3) {
      const outcome = await rapidReset(target, { streams: 1000, boundMs: 5000, abandon: true })
      t.teardown(outcome.release)
      outcomes.push(outcome)
    }
  })()
  const normal = await normalClient(normalTarget, '/normal', { requests: 40, deadlineMs: 15_000 })
  normalDone = true
  await attacks

  t.equal(seen('/rapid-reset'), 0, `no reset stream of ${outcomes.length} attack connections was forwarded to the VM`)
  const calm = outcomes.filter((o) => o.goaway?.errorCode === H2_ERROR.ENHANCE_YOUR_CALM && o.goaway.lastStreamId < 1000)
  const lastIds = [...new Set(outcomes.map((o) => o.goaway?.lastStreamId ?? 'none'))].join(', ')
  t.equal(calm.length, outcomes.length, `every attack connection got GOAWAY(ENHANCE_YOUR_CALM) before its 1,000th stream (last stream ids seen: ${lastIds})`)
  const p99 = quantile(normal.latencies, 0.99)
  t.equal(normal.failures, 0, 'the normal client got every answer')
  t.equal(normal.latencies.length, 40, 'the normal client made its 40 requests')
  t.ok(p99 < 2000, `normal client p99 ${Math.round(p99)} ms during the attack`)
  t.equal(seen('/normal'), normal.latencies.length, 'the VM saw exactly the normal client\'s requests')
  t.equal(await metric('vmfront_http2_abusive_connections_total{reason="rapid_reset"}'), outcomes.length, 'each abusive connection counted')

  // The attackers never closed their side: the proxy closed them within its grace.
  await noClientConnections()
  t.pass('no client connection left open')
  const fdsAfter = fds()
  t.ok(fdsAfter <= fdsBefore + 2, `fds before ${fdsBefore}, after ${fdsAfter}`)
})

t.test('resets under the budget: none forwarded, and the connection keeps serving', async (t) => {
  const conn = await openRawH2(target)
  t.teardown(() => { conn.destroy() })
  t.equal(await sendResetPairs(conn, target, { firstId: 1, streams: 150, batch: 50 }), 150, '150 streams opened and reset')
  t.equal(await rawGet(conn, target, 301, '/after-resets'), 'response', 'a request after the resets is answered')
  t.equal(seen('/rapid-reset'), 0, 'none of the reset streams reached the VM')
  t.equal(seen('/after-resets'), 1, 'the real request did')
  t.equal(conn.outcome.goaway, undefined, 'no GOAWAY under the budget')
})

t.test('a session carrying many clients (a chain parent, a proxy): resets fewer than its finished streams are tolerated', async (t) => {
  const conn = await openRawH2(target)
  t.teardown(() => { conn.destroy() })
  let id = 1
  for (let batch = 0; batch < 3; batch++, id += 200) {
    const ids = Array.from({ length: 100 }, (_, i) => id + 2 * i)
    t.equal(await rawGets(conn, target, ids, '/busy'), 100, `batch ${batch + 1}: 100 requests answered`)
  }
  // Then 250 aborts (past the budget of 200) spread between requests, as aborts of many
  // clients are. (Node refuses more than max_concurrent_streams new streams in one read,
  // reset or not: an aggregating client never sends that many at once.)
  for (let round = 0; round < 5; round++, id += 102) {
    await sendResetPairs(conn, target, { firstId: id, streams: 50 })
    t.equal(await rawGet(conn, target, id + 100, '/still-served'), 'response', `round ${round + 1}: 50 streams reset, the next request is served`)
  }
  t.equal(conn.outcome.goaway, undefined, 'no GOAWAY: 250 resets against 305 finished streams')
  t.equal(seen('/rapid-reset'), 0, 'none of the reset streams reached the VM')
})

t.test('resets after dispatch: the VM sees at most the budget, then GOAWAY', async (t) => {
  const before = await metric('vmfront_http2_abusive_connections_total{reason="rapid_reset"}')
  const outcome = await resetAfterDispatch(target, { streams: 1000, batch: 50, path: '/slow', dispatched: () => seen('/slow') })
  t.equal(outcome.goaway?.errorCode, H2_ERROR.ENHANCE_YOUR_CALM, 'GOAWAY(ENHANCE_YOUR_CALM)')
  const forwarded = seen('/slow')
  // The budget (200 resets per 10 s) plus the batch in flight when it ran out.
  t.ok(forwarded <= 250, `${forwarded} of ${outcome.sent} streams sent reached the VM`)
  t.equal(await metric('vmfront_http2_abusive_connections_total{reason="rapid_reset"}'), before + 1, 'counted')
  await noClientConnections()
  t.pass('the connection was closed')
})
