// The other HTTP/2 floods stay refused on the https listener (nghttp2 guards them; this
// keeps it so): CONTINUATION, SETTINGS and PING floods close the connection and are counted
// as abusive; an HPACK bomb and oversized header lists are refused per stream. Nothing of
// them reaches the VM, a normal client keeps being served, and no connection is left open.
import t, { type Test } from 'tap'
import { startProxyProcess, routesDoc, metricValue } from '../helpers/proxy-process.ts'
import { startBackend } from '../helpers/backend.ts'
import { pollUntil } from '../helpers/pebble.ts'
import { ackFlood, continuationFlood, hpackBomb, hugeHeaderList, normalClient } from './h2-attacks.ts'

const vm = await startBackend(t)
const proxy = await startProxyProcess(t, {
  routes: routesDoc([{ domain: 'vm.test', target: vm.origin }]),
  listen: '[listen]\nhttp = ""\nhttps = "127.0.0.1:0"\nadmin = "127.0.0.1:0"',
  toml: '[log]\naccess = false'
})
// The attackers never close their side: closing is the proxy's job.
const target = { port: proxy.ports.https, servername: 'vm.test', halfOpen: true }
const metric = async (series: string): Promise<number> => metricValue(await proxy.metrics(), series) ?? 0

/** After each attack: nothing reached the VM, a normal client is served, no connection stays open. */
async function aftermath (t: Test): Promise<void> {
  t.equal(vm.requests.filter((r) => r.url !== '/normal').length, 0, 'nothing of the attack reached the VM')
  const normal = await normalClient({ ...target, halfOpen: false }, '/normal', { requests: 3 })
  t.equal(normal.failures, 0, 'a normal client is still served')
  await pollUntil(async () => await metric('vmfront_open_connections') === 0, 5000, 'every client connection to be closed by the proxy')
  t.pass('no client connection left open')
}

t.test('CONTINUATION flood: the connection is closed after a few frames', async (t) => {
  const outcome = await continuationFlood(target, { frames: 20_000 })
  t.ok(outcome.closedAtMs !== undefined || outcome.goaway !== undefined, `closed (GOAWAY code ${outcome.goaway?.errorCode ?? '-'}) after ${outcome.sent} frames`)
  t.ok(outcome.sent < 20_000, 'long before the flood ended')
  await pollUntil(async () => await metric('vmfront_http2_abusive_connections_total{reason="continuation_flood"}') === 1, 3000, 'the abuse to be counted')
  t.pass('counted as continuation_flood')
  await aftermath(t)
})

for (const kind of ['settings', 'ping'] as const) {
  t.test(`${kind.toUpperCase()} flood never read: the connection is closed`, async (t) => {
    const before = await metric('vmfront_http2_abusive_connections_total{reason="flood"}')
    const outcome = await ackFlood(target, { kind, frames: 200_000, boundMs: 5000 })
    t.ok(outcome.closedAtMs !== undefined || outcome.goaway !== undefined, `closed after ${outcome.sent} frames`)
    await pollUntil(async () => await metric('vmfront_http2_abusive_connections_total{reason="flood"}') === before + 1, 3000, 'the abuse to be counted')
    t.pass('counted as flood')
    await aftermath(t)
  })
}

t.test('HPACK bomb: one 4 KB header referenced 10,000 times is refused', async (t) => {
  const outcome = await hpackBomb(target, { refs: 10_000 })
  t.same(outcome.responses, [], 'no response')
  t.ok(Object.keys(outcome.resets).length > 0 || outcome.goaway !== undefined, `refused (resets ${JSON.stringify(outcome.resets)})`)
  await aftermath(t)
})

t.test('huge header lists are refused', async (t) => {
  // Past the 128 fields nghttp2 takes: the stream is reset. Past max_header_bytes: a reset or
  // an error response from the listener; either way nothing is forwarded (checked in aftermath).
  const many = await hugeHeaderList(target, { headers: 2000, valueBytes: 10 })
  t.equal(many.stream, 'reset', '2,000 header fields: stream reset')
  const big = await hugeHeaderList(target, { headers: 1, valueBytes: 40_000 })
  t.not(big.stream, 'none', `a 40 KB header: ${big.stream}`)
  await aftermath(t)
})
