/**
 * Leases of the shared rate limiter (proxy/shared-rate-limit.ts, SPEC §12) with real
 * processes: with 2 workers, a profile with large limits is admitted from blocks
 * the primary leases (seen in /status: one held request holds a block of slots in
 * the primary), the token bucket still admits no more than its burst plus its
 * refill over a run of requests spread over both workers, and the leased slots go
 * back to the primary once idle.
 */
import t from 'tap'
import http from 'node:http'
import { startBackend } from '../helpers/backend.ts'
import { routesDoc, startProxyProcess, type ProxyProcess } from '../helpers/proxy-process.ts'
import { pollUntil } from '../helpers/pebble.ts'

function get (port: number, host: string, path: string, agent: http.Agent | false): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, headers: { host }, agent }, (res) => {
      res.resume()
      res.on('end', () => { resolve(res.statusCode ?? 0) })
      res.on('error', reject)
    })
    req.on('error', reject)
  })
}

async function status (proxy: ProxyProcess): Promise<{ rate_limits: Array<{ name: string, inFlight: number }>, workers: Array<{ role: string, requests?: number }> }> {
  return await (await fetch(`http://127.0.0.1:${proxy.ports.admin}/status`)).json() as never
}

t.test('2 workers: a large limit is leased by blocks and still holds', async (t) => {
  const held: Array<() => void> = []
  const vm = await startBackend(t, (req, res) => {
    if (req.url === '/hold') held.push(() => { res.end('ok') })
    else res.end('ok')
  })
  t.teardown(() => { for (const release of held) release() })
  const burst = 1024
  const rate = 8
  const proxy = await startProxyProcess(t, {
    routes: routesDoc([{ domain: 'big.test', target: vm.origin, rate_profile: 'big' }]),
    // 2 workers: a block is 512 / (16 x 2) = 16 slots and min(1024 / 32, 8/s x 1 s) = 8 tokens.
    toml: `[server]\nworkers = 2\n[log]\naccess = false\n[[rate_profile]]\nname = "big"\nconcurrent_max_requests = 512\nconcurrent_overflow_timeout = "0s"\nlimit_burst_requests = ${burst}\nlimit_requests_per_second = ${rate}\n`
  })
  const big = async (): Promise<number> => (await status(proxy)).rate_limits.find((p) => p.name === 'big')?.inFlight ?? -1

  // One held request: the primary counts the worker's whole block in flight.
  const started = Date.now()
  const hold = get(proxy.ports.http, 'big.test', '/hold', false)
  await pollUntil(() => held.length === 1, 10_000, 'the held request at the VM')
  t.equal(await big(), 16, 'one request leased a block of 16 slots')
  held.shift()!()
  t.equal(await hold, 200)

  // Back-to-back requests on 16 keep-alive connections over both workers: at most the burst plus the refill.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 })
  t.teardown(() => { agent.destroy() })
  const statuses: number[] = []
  await Promise.all(Array.from({ length: 16 }, async (_, c) => {
    for (let i = 0; i < 75; i++) statuses.push(await get(proxy.ports.http, 'big.test', '/', c < 8 ? agent : false))
  }))
  const seconds = (Date.now() - started) / 1000
  const ok = statuses.filter((s) => s === 200).length + 1
  // Exact: the bucket's burst, plus its refill since the first request.
  const bound = burst + Math.ceil(rate * seconds)
  t.ok(ok <= bound, `${ok} admitted of ${statuses.length + 1} in ${seconds.toFixed(1)} s: no more than the burst plus the refill (${bound})`)
  t.ok(ok >= burst - 2 * 8, `at most workers x block tokens left unused (${ok} >= ${burst - 16})`)
  t.equal(statuses.filter((s) => s !== 200 && s !== 429).length, 0, 'every other answer is a 429')
  const served = (await status(proxy)).workers.filter((w) => w.role.startsWith('worker') && (w.requests ?? 0) > 0).length
  t.equal(served, 2, 'both workers served')

  // Idle: the leased slots go back to the primary.
  await pollUntil(async () => await big() === 0, 5000, 'leased slots given back once idle')
  t.equal(await big(), 0, 'nothing held in the primary once idle')
  t.equal(await proxy.stop(), 0)
})
