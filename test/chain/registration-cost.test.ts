// Registration cost and the children cap, on an in-process parent: a burst of
// registrations shares router swaps and file writes instead of paying an O(all
// children) swap and write each; past chain.max_children a new child gets 503.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { parseConfigText } from '../../proxy/config.ts'
import { createMetrics } from '../../proxy/metrics.ts'
import { startParent, REGISTRATIONS_FILE } from '../../proxy/chain/parent.ts'
import { createRegistrationStore } from '../../proxy/chain/persist.ts'
import { createChildRegistry, type ChildRecord } from '../../proxy/chain/registry.ts'
import type { RouteTable } from '../../proxy/route-table.ts'
import { deadPort } from '../helpers/backend.ts'
import { metricValue, tempDir } from '../helpers/proxy-process.ts'
import { memoryLogger, until } from './chain-helpers.ts'

const PSK = 'registration-cost-psk-0123'
const EMPTY: RouteTable = Object.freeze({ version: 1, format: 'v1', routes: Object.freeze([]) }) as RouteTable

async function inProcessParent (t: { teardown (fn: () => unknown): void }, maxChildren: number, swapCostPerChildMs: number) {
  const dir = tempDir(t)
  const port = await deadPort()
  const config = parseConfigText(`data_dir = ${JSON.stringify(dir)}\n[listen]\nhttp = ""\nhttps = ""\nadmin = ""\n[chain]\nmode = "parent"\nparent_url = "http://127.0.0.1:${port}"\npsk = "${PSK}"\nlease_ttl = "10m"\nmax_children = ${maxChildren}\n`, join(dir, 'proxy.toml'))
  const metrics = createMetrics({ defaultMetrics: false })
  const { logger, lines } = memoryLogger()
  let swaps = 0
  let runtime: Awaited<ReturnType<typeof startParent>> | undefined
  runtime = await startParent({
    config,
    logger,
    metrics,
    hasProfile: (name) => name === 'default',
    routeTable: () => EMPTY,
    served: {
      serveChained (entries) {
        swaps++
        // A swap walks every chained route (like served-routes.ts does): O(children).
        let n = 0
        for (const _ of entries) n++
      const until = performance.now() + swapCostPerChildMs * n
        while (performance.now() < until) { /* busy, like a big router build */ }
      }
    }
  })
  t.teardown(async () => { await runtime!.beginShutdown(); await runtime!.stop() })
  const agent = new Agent({ connections: 4 })
  t.teardown(() => agent.close())
  const register = async (name: string, domains: string[]) => {
    const res = await request(`http://127.0.0.1:${port}/chain/v1/register`, {
      dispatcher: agent,
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${PSK}` },
      body: JSON.stringify({ name, child_url: 'http://127.0.0.1:1', domains: domains.map((domain) => ({ domain })) })
    })
    return { status: res.statusCode, body: await res.body.json() as any }
  }
  return { runtime, register, swaps: () => swaps, lines, metrics, file: join(dir, REGISTRATIONS_FILE) }
}

t.test('a burst of registrations shares router swaps (one per registration before)', async (t) => {
  // 0.01 ms per chained route per swap: 400 children × 2 domains ≈ 8 ms a swap at the end.
  const parent = await inProcessParent(t, 1000, 0.01)
  const swapsAtStart = parent.swaps()
  const start = performance.now()
  for (let i = 0; i < 400; i++) {
    const res = await parent.register(`c${i}`, [`a.c${i}.example.com`, `b.c${i}.example.com`])
    t.equal(res.status, 200, `c${i} registered`, { diagnostic: res.status !== 200 })
  }
  const ms = performance.now() - start
  const swaps = parent.swaps() - swapsAtStart
  t.ok(swaps < 400 / 3, `400 sequential registrations caused ${swaps} router swaps in ${Math.round(ms)} ms`)
  // Every domain is routable once the pending swap has run.
  await until('the last registration in the router', () => [...parent.runtime.entries()].some((e) => e.domain === 'b.c399.example.com') || undefined, 2000)
  t.equal([...parent.runtime.entries()].length, 800)
  t.equal(metricValue(await parent.metrics.registry.metrics(), 'vmfront_chain_children'), 400)
  // The file catches up too, written a few times rather than 400.
  await until('the registrations file complete', () => {
    try { return (JSON.parse(readFileSync(parent.file, 'utf8')) as { children: unknown[] }).children.length === 400 || undefined } catch { return undefined }
  }, 5000)
})

t.test('a lone registration is routable as soon as it is answered', async (t) => {
  const parent = await inProcessParent(t, 10, 0)
  t.equal((await parent.register('solo', ['solo.example.com'])).status, 200)
  // The swap runs before the next I/O is read: a request right after the answer sees it.
  await new Promise((resolve) => setImmediate(resolve))
  t.ok([...parent.runtime.entries()].some((e) => e.domain === 'solo.example.com'))
})

t.test('past chain.max_children a new child gets 503 with a JSON error, counted; known children still renew', async (t) => {
  const parent = await inProcessParent(t, 3, 0)
  for (const name of ['a', 'b', 'c']) t.equal((await parent.register(name, [`${name}.example.com`])).status, 200)
  const full = await parent.register('d', ['d.example.com'])
  t.equal(full.status, 503)
  t.equal(full.body.error.code, 'CHAIN_CHILDREN_FULL')
  t.match(full.body.error.message, /chain\.max_children/)
  t.match(full.body.error.message, /"d"/)
  t.equal((await parent.register('d2', ['d2.example.com'])).status, 503)
  const text = await parent.metrics.registry.metrics()
  t.equal(metricValue(text, 'vmfront_chain_registrations_refused_total{reason="full"}'), 2)
  t.equal(metricValue(text, 'vmfront_chain_children'), 3)
  t.equal(parent.lines.filter((l) => l.msg === 'chain registration refused: chain.max_children reached').length, 1, 'logged once per interval, not per refusal')
  t.equal((await parent.register('b', ['b.example.com', 'b2.example.com'])).status, 200, 'a known child still changes its domains')
  t.notOk([...parent.runtime.entries()].some((e) => e.domain === 'd.example.com'))
})

t.test('saves in a burst share writes, spaced by minIntervalMs, and the last state lands on disk', async (t) => {
  const dir = tempDir(t)
  const file = join(dir, REGISTRATIONS_FILE)
  const store = createRegistrationStore(file, memoryLogger().logger, { minIntervalMs: 200 })
  let snapshots = 0
  const state: ChildRecord[] = []
  const saves: Array<Promise<void>> = []
  const start = performance.now()
  for (let i = 0; i < 50; i++) {
    state.push({ name: `c${i}`, url: 'http://10.0.0.1', domains: [{ domain: `c${i}.example.com` }], registeredAt: 0, renewedAt: 0, expiresAt: 0 })
    saves.push(store.save(() => { snapshots++; return [...state] }))
    if (i === 25) await saves[0]
  }
  await Promise.all(saves)
  t.ok(snapshots <= 3, `50 saves built ${snapshots} snapshots (one per write)`)
  t.ok(performance.now() - start >= 190, 'the second write waited for the interval')
  t.equal((JSON.parse(readFileSync(file, 'utf8')) as { children: unknown[] }).children.length, 50)
})

t.test('a saved registry larger than max_children is restored up to the limit', async (t) => {
  const registry = createChildRegistry({ leaseTtlMs: 1000, parentServes: () => false, maxChildren: 2 })
  const saved = ['a', 'b', 'c'].map((name) => ({ name, url: 'http://10.0.0.1', domains: [{ domain: `${name}.example.com` }], registeredAt: 0 }))
  t.same(registry.restore(saved, 0).map((c) => c.name), ['a', 'b'])
  t.equal(registry.size, 2)
})
