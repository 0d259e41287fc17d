// A flood of chain registrations against a real parent process: bounded by
// chain.max_children (503 with a JSON error past it, counted), answered in
// seconds, with the parent's memory bounded. `npm run torture` runs it bigger.
import t from 'tap'
import { metricValue } from '../helpers/proxy-process.ts'
import { until } from '../chain/chain-helpers.ts'
import { registrationFlood } from './chain-attacks.ts'

t.test('600 registrations against max_children = 500', async (t) => {
  const result = await registrationFlood(t, { children: 600, concurrency: 8, chain: { max_children: 500 } })
  t.same(result.statuses, { 200: 500, 503: 100 })
  t.equal((result.samples[503] as { error: { code: string } }).error.code, 'CHAIN_CHILDREN_FULL')
  t.ok(result.ms < 15_000, `answered in ${Math.round(result.ms)} ms`)
  const grownMb = (result.rssAfter - result.rssBefore) / 1e6
  t.ok(grownMb < 100, `the parent's RSS grew by ${grownMb.toFixed(1)} MB`)
  const metrics = await result.parent.metrics()
  t.equal(metricValue(metrics, 'vmfront_chain_children'), 500)
  t.equal(metricValue(metrics, 'vmfront_chain_registrations_refused_total{reason="full"}'), 100)
  // Router swaps of a burst are coalesced: the last one may land a moment after the last answer.
  t.equal(await until('every chained route in the router', async () => metricValue(await result.parent.metrics(), 'vmfront_routes') === 1000 || undefined, 2000), true, 'two domains for each registered child')
})
