// The pure parts of the torture harness (npm run torture): statistics, the verdict, the
// route-file mutator's determinism, client addresses, raw HTTP/2 frames. The attacks
// themselves run only under `npm run torture`.
import t from 'tap'
import { percentile, summarizeResults } from './normal-client.ts'
import { slope } from './attacks/soak.ts'
import { clientAddress } from './attacks/many-ips.ts'
import { baseDocuments, createRng, mutate } from './route-mutator.ts'
import { frame, FRAME, getThenCancel } from './h2-raw.ts'
import { judge } from './verdict.ts'
import { parseRouteTable } from '../../proxy/route-table.ts'
import type { Sample } from './types.ts'

t.test('normal client: failures by reason, percentiles over every request', async (t) => {
  t.equal(percentile([], 99), 0)
  t.equal(percentile([1, 2, 3, 4], 50), 2)
  const sorted = Array.from({ length: 100 }, (_, i) => i + 1)
  t.equal(percentile(sorted, 99), 99)
  t.equal(percentile(sorted, 100), 100)
  const stats = summarizeResults([{ ms: 1, status: 200 }, { ms: 2, status: 404 }, { ms: 5000, error: 'timeout' }, { ms: 3, status: 502 }], [404])
  t.same(stats.reasons, { timeout: 1, 'status 502': 1 })
  t.equal(stats.failures, 2)
  t.equal(stats.max, 5000, 'a timed-out request counts at the time it took')
})

t.test('soak: least-squares slope', async (t) => {
  t.equal(slope([[0, 10], [1, 12], [2, 14]]), 2)
  t.equal(slope([[0, 5]]), 0)
  t.equal(slope([[1, 5], [1, 7]]), 0)
})

t.test('many-ips: distinct loopback addresses, never .0, .255 or 127.0.0.1', async (t) => {
  const seen = new Set<string>()
  for (let i = 0; i < 70_000; i++) {
    const a = clientAddress(i)
    const last = Number(a.split('.')[3])
    if (last === 0 || last === 255 || !a.startsWith('127.') || a === '127.0.0.1') t.fail(`bad address ${a} for ${i}`)
    seen.add(a)
  }
  t.equal(seen.size, 70_000)
})

t.test('route mutator: same seed, same files; the bases are valid', async (t) => {
  const bases = baseDocuments('torture.test', 'flood.test', '127.0.0.1', 8080)
  t.ok(parseRouteTable(bases.v1).ok, 'v1 base is valid')
  t.ok(parseRouteTable(bases.legacy).ok, 'Mulch base is valid')
  const run = (seed: number): string[] => {
    const rng = createRng(seed)
    return Array.from({ length: 200 }, () => mutate(rng, bases).bytes.toString('base64'))
  }
  const a = run(9)
  t.same(run(9), a, 'replayable')
  t.not(run(10).join(), a.join(), 'another seed, other files')
  t.ok(new Set(a).size > 150, 'mostly distinct files')
})

t.test('raw HTTP/2 frames', async (t) => {
  const ping = frame(FRAME.PING, 0, 0, Buffer.alloc(8))
  t.same([...ping.subarray(0, 9)], [0, 0, 8, 6, 0, 0, 0, 0, 0])
  const pair = getThenCancel(3, 'a.test', '/x')
  const headersLength = pair.readUIntBE(0, 3)
  t.equal(pair[3], FRAME.HEADERS)
  t.equal(pair[4], 0x5, 'END_STREAM | END_HEADERS')
  t.equal(pair.readUInt32BE(5), 3)
  const rst = pair.subarray(9 + headersLength)
  t.same([...rst], [0, 0, 4, FRAME.RST_STREAM, 0, 0, 0, 0, 3, 0, 0, 0, 8], 'RST_STREAM(CANCEL) on the same stream')
})

t.test('verdict: leaks, latency, heap growth and findings fail; quiet passes', async (t) => {
  const at = (over: Partial<Sample> = {}): Sample => ({ rssKiB: 100_000, fds: 30, upstream: 0, upstreamWithUnread: 0, upstreamStates: {}, heapUsedKiB: 20_000, externalKiB: 5000, ...over })
  const normal = { requests: 100, failures: 0, reasons: {}, p50: 3, p99: 20, max: 30 }
  const base = { alive: true, exit: 0, normal, before: at(), after: at({ fds: 32, rssKiB: 300_000 }), settled: true, outcome: { stats: {}, problems: [] } }
  t.ok(judge(base, { maxP99Ms: 2000 }).pass, 'fds within tolerance and RSS alone do not fail')
  const leaky = judge({ ...base, after: at({ fds: 289, upstream: 256, upstreamStates: { ESTAB: 256 } }) }, { maxP99Ms: 2000 })
  t.notOk(leaky.pass)
  t.equal(leaky.leakedUpstream, 256)
  t.equal(leaky.leakedFds, 259)
  t.notOk(judge({ ...base, normal: { ...normal, p99: 2500 } }, { maxP99Ms: 2000 }).pass)
  t.notOk(judge({ ...base, after: at({ heapUsedKiB: 60_000 }) }, { maxP99Ms: 2000 }).pass)
  t.notOk(judge({ ...base, exit: 'no exit within 13 s of SIGTERM (killed)' }, { maxP99Ms: 2000 }).pass)
  t.notOk(judge({ ...base, outcome: { stats: {}, problems: ['x'] } }, { maxP99Ms: 2000 }).pass)
})
