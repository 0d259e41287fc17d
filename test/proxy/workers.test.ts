/**
 * Workers (SPEC §12), with real processes and sockets: N workers serve one port,
 * kill -9 of one under load costs only its own requests and it is replaced, rate
 * limits hold for the whole proxy, one ACME order for 50 handshakes on 4 workers.
 */
import t from 'tap'
import http from 'node:http'
import tls from 'node:tls'
import { join } from 'node:path'
import { startBackend } from '../helpers/backend.ts'
import { metricValue, routesDoc, startProxyProcess, tempDir, type ProxyProcess } from '../helpers/proxy-process.ts'
import { freePort, pollUntil, startPebble } from '../helpers/pebble.ts'

interface WorkerStatus { pid: number, role: string, requests?: number, restarts?: number }

async function workersOf (proxy: ProxyProcess): Promise<WorkerStatus[]> {
  const res = await fetch(`http://127.0.0.1:${proxy.ports.admin}/status`)
  return ((await res.json()) as { workers: WorkerStatus[] }).workers.filter((w) => w.role.startsWith('worker'))
}

/** One request on a new connection (agent: false): spreads over the accept queue's takers. */
function get (port: number, host: string, path = '/', agent: http.Agent | false = false): Promise<{ status: number, body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, headers: { host }, agent }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { body += c })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body }) })
      res.on('error', reject)
    })
    req.on('error', reject)
  })
}

t.test('N workers serve one port, each of them; kill -9 of one is replaced and the others keep serving', async (t) => {
  const vm = await startBackend(t, (req, res) => {
    if (req.url === '/slow') { setTimeout(() => { res.end('slow') }, 300); return }
    res.end('ok')
  })
  const proxy = await startProxyProcess(t, { routes: routesDoc([{ domain: 'app.test', target: vm.origin }]), toml: '[server]\nworkers = 2' })
  const pidFile = (await import('node:fs')).readFileSync(proxy.pidFile, 'utf8')
  t.equal(pidFile, String(proxy.child.pid), 'one PID file: the primary')

  for (let i = 0; i < 120; i++) t.equal((await get(proxy.ports.http, 'app.test')).status, 200, 'served') || i
  const before = await workersOf(proxy)
  t.equal(before.length, 2, 'two workers listed in /status')
  for (const w of before) t.ok((w.requests ?? 0) > 0, `worker ${w.role} (pid ${w.pid}) served some of the 120 requests (${String(w.requests)})`)
  t.equal(before.reduce((n, w) => n + (w.requests ?? 0), 0), 120, 'the per-worker counts add up')
  t.equal(metricValue(await proxy.metrics(), 'vmfront_http_requests_total{domain="app.test",code="200",method="GET"}'), 120, '/metrics sums the workers')
  await pollUntil(() => proxy.logs.filter((l) => l.msg === 'access').length >= 120, 5000, 'the access lines')
  t.same([...new Set(proxy.logs.filter((l) => l.msg === 'access').map((l) => l.worker))].sort(), [0, 1], 'one log stream: access lines name the worker that served')

  // Steady keep-alive load while one worker is killed.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 })
  t.teardown(() => { agent.destroy() })
  let stop = false
  const outcomes = { ok: 0, failed: 0 }
  const loops = Array.from({ length: 8 }, async () => {
    while (!stop) {
      try {
        const r = await get(proxy.ports.http, 'app.test', '/', agent)
        if (r.status === 200) outcomes.ok++
        else outcomes.failed++
      } catch { outcomes.failed++ }
    }
  })
  await pollUntil(() => outcomes.ok > 100, 10_000, 'load running')
  const victim = before[0]
  const killedAt = Date.now()
  process.kill(victim.pid, 'SIGKILL')
  let replacement: WorkerStatus | undefined
  await pollUntil(async () => {
    replacement = (await workersOf(proxy)).find((w) => w.role.startsWith(victim.role) && w.pid !== victim.pid)
    return replacement !== undefined
  }, 5000, 'a replacement worker')
  t.ok(Date.now() - killedAt < 1000, `the dead worker was replaced within a second (${Date.now() - killedAt} ms)`)
  t.equal(replacement?.restarts, 1, 'its slot counts one restart')
  await pollUntil(async () => (await workersOf(proxy)).every((w) => !w.role.includes('starting')), 10_000, 'the replacement serving')
  const failedAtKill = outcomes.failed
  const okAtKill = outcomes.ok
  await pollUntil(() => outcomes.ok > okAtKill + 200, 10_000, 'load after the replacement')
  stop = true
  await Promise.all(loops)
  t.ok(failedAtKill <= 8, `only the killed worker's own in-flight requests failed (${failedAtKill}, at most one per client connection)`)
  t.equal(outcomes.failed, failedAtKill, 'nothing failed after that')
  t.equal(metricValue(await proxy.metrics(), 'vmfront_worker_restarts_total'), 1, 'vmfront_worker_restarts_total')
  t.equal(await proxy.stop(), 0, 'the primary drains its workers and exits 0')
})

for (const workers of [2, 4]) {
  t.test(`a rate limit of 2 concurrent / 10 requests per client IP holds exactly with ${workers} workers`, async (t) => {
    let inside = 0
    let peak = 0
    const held: Array<() => void> = []
    const vm = await startBackend(t, (req, res) => {
      inside++
      peak = Math.max(peak, inside)
      const done = (): void => { inside--; res.end('ok') }
      if (req.url === '/hold') held.push(done)
      else done()
    })
    const proxy = await startProxyProcess(t, {
      routes: routesDoc([{ domain: 'c.test', target: vm.origin, rate_profile: 'two' }, { domain: 'b.test', target: vm.origin, rate_profile: 'ten' }]),
      toml: `[server]\nworkers = ${workers}\n[log]\naccess = false\n` +
        '[[rate_profile]]\nname = "two"\nconcurrent_max_requests = 2\nconcurrent_overflow_timeout = "0s"\n' +
        '[[rate_profile]]\nname = "ten"\nlimit_burst_requests = 10\nlimit_requests_per_second = 0.001\n'
    })
    // 12 concurrent requests on 12 connections (spread over the workers): 2 get in, 10 get 429 at once.
    const pending = Array.from({ length: 12 }, async () => await get(proxy.ports.http, 'c.test', '/hold'))
    const refused = await Promise.race([
      (async () => {
        const settled: Array<{ status: number }> = []
        for (const p of pending) p.then((r) => settled.push(r), () => {})
        await pollUntil(() => settled.length >= 10, 10_000, '10 answers')
        return settled
      })()
    ])
    t.equal(refused.length, 10)
    t.ok(refused.every((r) => r.status === 429), 'the 10 over the limit got 429')
    // The 2 admitted ones may still be on their way to the VM on a busy machine.
    await pollUntil(() => inside >= 2, 10_000, 'the admitted requests at the VM')
    t.equal(inside, 2, 'exactly 2 reached the VM')
    for (const release of held) release()
    const all = await Promise.all(pending)
    t.equal(all.filter((r) => r.status === 200).length, 2, 'the 2 admitted ones complete')
    t.equal(peak, 2, 'never more than 2 at the VM')

    // Token bucket: 10 back to back, then 429 (new connections each, so every worker takes some).
    const statuses: number[] = []
    for (let i = 0; i < 16; i++) statuses.push((await get(proxy.ports.http, 'b.test')).status)
    t.same(statuses.filter((s) => s === 200).length, 10, `exactly 10 of 16 admitted (${statuses.join(' ')})`)
    const served = (await workersOf(proxy)).filter((w) => (w.requests ?? 0) > 0).length
    t.ok(served >= 2, `requests were spread over ${served} workers`)
    t.equal(await proxy.stop(), 0)
  })
}

t.test('50 concurrent handshakes for a new domain with 4 workers make one ACME order; every worker serves the certificate', async (t) => {
  const httpPort = await freePort()
  const pebble = await startPebble({ httpPort })
  t.teardown(() => pebble.stop())
  const vm = await startBackend(t)
  const proxy = await startProxyProcess(t, {
    dataDir: join(tempDir(t), 'data'),
    routes: routesDoc([{ domain: 'many.test', target: vm.origin }]),
    listen: `[listen]\nhttp = "127.0.0.1:${httpPort}"\nhttps = "127.0.0.1:0"\nadmin = "127.0.0.1:0"`,
    toml: `[server]\nworkers = 4\n[log]\naccess = false\n[acme]\nenabled = true\ndirectory_url = ${JSON.stringify(pebble.directoryUrl)}\nca_file = ${JSON.stringify(pebble.caFile)}\nemail = "ops@many.test"`
  })
  const root = await pebble.rootPem()
  const handshake = (): Promise<boolean> => new Promise((resolve, reject) => {
    const s = tls.connect({ port: proxy.ports.https, host: '127.0.0.1', servername: 'many.test', ca: root, rejectUnauthorized: false }, () => {
      resolve(s.authorized)
      s.destroy()
    })
    s.on('error', reject)
  })
  await Promise.all(Array.from({ length: 50 }, handshake))
  await pollUntil(async () => metricValue(await proxy.metrics(), 'vmfront_acme_orders_total{result="success"}') === 1, 30_000, 'the order')
  const issuedAt = Date.now()
  // Every worker has it within a second: 40 handshakes on new connections all verify.
  await pollUntil(async () => (await Promise.all(Array.from({ length: 40 }, handshake))).every(Boolean), 5000, 'every handshake verified')
  t.ok(Date.now() - issuedAt < 1000, `every worker served it within a second (${Date.now() - issuedAt} ms)`)
  t.equal(metricValue(await proxy.metrics(), 'vmfront_acme_orders_total{result="success"}'), 1, 'one order for the whole proxy')
  t.equal(metricValue(await proxy.metrics(), 'vmfront_acme_orders_total{result="failure"}'), 0, 'and no failed one')
  t.equal(await proxy.stop(), 0)
})

t.test('[server] workers changes on SIGHUP: more workers start, fewer drain', async (t) => {
  const vm = await startBackend(t)
  const proxy = await startProxyProcess(t, { routes: routesDoc([{ domain: 'app.test', target: vm.origin }]), toml: '[server]\nworkers = 2\n[log]\naccess = false' })
  const fs = await import('node:fs')
  const configFile = join(proxy.dir, 'proxy.toml')
  const serving = async (): Promise<number> => (await workersOf(proxy)).filter((w) => !w.role.includes('starting')).length
  fs.writeFileSync(configFile, fs.readFileSync(configFile, 'utf8').replace('workers = 2', 'workers = 3'))
  await proxy.reload()
  await pollUntil(async () => await serving() === 3, 10_000, 'three workers')
  t.pass('a third worker serves')
  fs.writeFileSync(configFile, fs.readFileSync(configFile, 'utf8').replace('workers = 3', 'workers = 1'))
  await proxy.reload()
  await pollUntil(async () => (await workersOf(proxy)).length === 1, 10_000, 'one worker')
  t.equal((await get(proxy.ports.http, 'app.test')).status, 200, 'the remaining worker serves')
  t.equal(metricValue(await proxy.metrics(), 'vmfront_worker_restarts_total'), 0, 'workers drained on purpose are not restarts')
  t.equal(await proxy.stop(), 0)
})

t.test('a primary killed with -9 leaves no worker behind', async (t) => {
  const vm = await startBackend(t)
  const proxy = await startProxyProcess(t, { routes: routesDoc([{ domain: 'app.test', target: vm.origin }]), toml: '[server]\nworkers = 2\n[log]\naccess = false' })
  const pids = (await workersOf(proxy)).map((w) => w.pid)
  t.equal(pids.length, 2)
  process.kill(proxy.child.pid!, 'SIGKILL')
  const alive = (pid: number): boolean => { try { process.kill(pid, 0); return true } catch { return false } }
  await pollUntil(() => pids.every((pid) => !alive(pid)), 10_000, 'the workers gone')
  t.pass('both workers exited once their primary was gone (they would serve a socket nobody supervises)')
})

t.test('SIGTERM to the whole process group (systemd stop, Ctrl-C): every worker drains its requests, none is cut', async (t) => {
  const { spawn } = await import('node:child_process')
  const { writeFileSync } = await import('node:fs')
  const { CLI, NODE } = await import('../helpers/proxy-process.ts')
  const { followProcess } = await import('../helpers/process-logs.ts')
  let arrived = 0
  const vm = await startBackend(t, (_req, res) => { arrived++; setTimeout(() => { res.end('slow but whole') }, 700) })
  const dir = tempDir(t)
  writeFileSync(join(dir, 'routes.json'), JSON.stringify(routesDoc([{ domain: 'app.test', target: vm.origin }])))
  writeFileSync(join(dir, 'p.toml'), `data_dir = "${dir}/data"\nroutes_file = "${dir}/routes.json"\npid_file = "${dir}/p.pid"\n[listen]\nhttp = "127.0.0.1:0"\nhttps = ""\nadmin = ""\n[server]\nworkers = 2\n[log]\naccess = false\n`)
  // Its own process group, as a service's cgroup or a terminal's foreground job.
  const child = spawn(NODE, [CLI, 'proxy', '--config', join(dir, 'p.toml')], { stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  const proxy = followProcess(t, child, 'proxy')
  const started = await proxy.waitForLog((l) => l.msg === 'vmfront proxy started', 15_000)
  const port = (started.listeners as Record<string, number>).http
  const pending = Array.from({ length: 6 }, async () => await get(port, 'app.test'))
  await pollUntil(() => arrived === 6, 5000, 'six requests at the VM')
  process.kill(-child.pid!, 'SIGTERM')
  const answers = await Promise.all(pending)
  t.same(answers.map((a) => `${a.status} ${a.body}`), Array(6).fill('200 slow but whole'), 'every in-flight request finished')
  t.equal(await proxy.exited, 0, 'and the proxy exited 0')
  t.same(proxy.logs.filter((l) => l.msg === 'second stop signal: exiting now'), [], 'the primary\'s drain notice is not taken for a second signal')
})
