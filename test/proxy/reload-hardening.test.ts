// Reloads that cannot be wedged, emptied by accident or flood the log (issue 9 points 4, 14 and 7), on a real process.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { renameSync } from 'node:fs'
import { join } from 'node:path'
import { request } from 'undici'
import { startProxyProcess, routesDoc, metricValue, ROOT } from '../helpers/proxy-process.ts'
import { startBackend } from '../helpers/backend.ts'

const FAILED = 'route reload failed: still serving the previous table'

async function statusOf (port: number, host: string): Promise<number> {
  const res = await request(`http://127.0.0.1:${port}/`, { headers: { host } })
  await res.body.dump()
  return res.statusCode
}

/** Replaces `file` with a FIFO that nobody writes to. */
function fifoInPlaceOf (file: string): void {
  execFileSync('mkfifo', [`${file}.fifo`])
  renameSync(`${file}.fifo`, file)
}

t.test('SIGHUP with the route file swapped for a FIFO: refused at once, still serving, SIGTERM exits 0', async (t) => {
  const vm = await startBackend(t)
  const proxy = await startProxyProcess(t, { routes: routesDoc([{ domain: 'a.test', target: vm.origin }]), toml: '[timeouts]\ndrain = "5s"' })
  fifoInPlaceOf(proxy.routesFile)
  const outcome = await proxy.reload()
  t.equal(outcome.msg, FAILED, 'the reload finished (refused) instead of blocking')
  const problem = proxy.logs.find((l) => l.msg === 'route file problem')
  t.match(problem, { file: proxy.routesFile, path: '$', problem: 'is a named pipe (FIFO), not a regular file: refused' }, 'the message names the file and its kind')
  t.equal(await statusOf(proxy.ports.http, 'a.test'), 200, 'the previous table still serves')
  const again = await proxy.reload()
  t.equal(again.msg, FAILED, 'a second SIGHUP is not queued behind a wedged one')
  t.equal(metricValue(await proxy.metrics(), 'vmfront_route_reloads_total{result="failure"}'), 2)
  const started = Date.now()
  t.equal(await proxy.stop('SIGTERM'), 0, 'exit status 0')
  t.ok(Date.now() - started < 5000, `exited in ${Date.now() - started} ms`)
})

t.test('a FIFO route file at start: serving starts with no table, /healthz 503, failure counted; SIGTERM exits 0', async (t) => {
  const proxy = await startProxyProcess(t, { beforeStart: ({ routesFile }) => { fifoInPlaceOf(routesFile) } })
  t.match(proxy.logs.find((l) => l.msg === 'route file problem'), { file: proxy.routesFile, problem: 'is a named pipe (FIFO), not a regular file: refused' })
  const health = await request(`http://127.0.0.1:${proxy.ports.admin}/healthz`)
  t.equal(health.statusCode, 503, 'as for an invalid file at start')
  await health.body.dump()
  t.equal(metricValue(await proxy.metrics(), 'vmfront_route_reloads_total{result="failure"}'), 1)
  t.equal(await statusOf(proxy.ports.http, 'a.test'), 404, 'serving, with no route')
  t.equal(await proxy.stop('SIGTERM'), 0)
})

t.test('a read hung in the kernel: SIGTERM still ends the process within the drain time', async (t) => {
  const vm = await startBackend(t)
  const proxy = await startProxyProcess(t, {
    routes: routesDoc([{ domain: 'a.test', target: vm.origin }]),
    toml: '[timeouts]\ndrain = "2s"',
    env: { NODE_OPTIONS: `--import ${join(ROOT, 'test/helpers/hang-open-hook.ts')}` }
  })
  const hanging = new Promise<void>((resolve) => {
    proxy.child.stderr?.on('data', () => { if (proxy.stderr().includes('hang-open-hook: the open of')) resolve() })
  })
  execFileSync('mkfifo', [`${proxy.routesFile}.hang`])
  proxy.child.kill('SIGHUP')
  await hanging
  t.equal(await statusOf(proxy.ports.http, 'a.test'), 200, 'serving while the read hangs')
  const started = Date.now()
  const exit = await proxy.stop('SIGTERM')
  const ms = Date.now() - started
  t.equal(exit, 'SIGTERM', 'ended by the signal itself (Node cannot exit normally past a hung thread-pool thread)')
  t.ok(ms < 5000, `exited in ${ms} ms (drain 2 s)`)
  t.match(proxy.logs.find((l) => l.msg === 'a route file read has not returned: exiting by signal, without waiting for it'), { file: proxy.routesFile, signal: 'SIGTERM' })
  t.ok(proxy.logs.some((l) => l.msg === 'stopped'), 'the drain ran to its end first')
})

t.test('a bare {} does not wipe a table loaded from a v1 file; the explicit empty table does; {} from mulchd loads', async (t) => {
  const vm = await startBackend(t)
  const proxy = await startProxyProcess(t, { routes: routesDoc([{ domain: 'a.test', target: vm.origin }]) })
  proxy.writeRoutes('{}\n')
  t.equal((await proxy.reload()).msg, FAILED, '{} in place of a v1 table: refused')
  t.match(proxy.logs.findLast((l) => l.msg === 'route file problem'), { path: '$', problem: /^is a bare \{\} but the 1 route in service came from a version 1 file: refused as an emptied file; to empty the table, write \{"version":1,"routes":\[\]\}$/ })
  t.equal(await statusOf(proxy.ports.http, 'a.test'), 200, 'a.test still served')
  proxy.writeRoutes('{"version":1,"routes":[]}')
  t.match(await proxy.reload(), { msg: 'routes loaded', routes: 0 }, 'the explicit empty table empties it')
  t.equal(await statusOf(proxy.ports.http, 'a.test'), 404)

  // Mulch's format: mulchd writes {} once no VM has a domain, and that must empty the table.
  proxy.writeRoutes({ 'm.test': { Name: 'm.test', VMName: 'm', RedirectTo: '', RedirectCode: 0, DestinationHost: '127.0.0.1', DestinationPort: Number(new URL(vm.origin).port), RedirectToHTTPS: false, RateProfile: '' } })
  t.match(await proxy.reload(), { msg: 'routes loaded', routes: 1, format: 'mulch-legacy' })
  t.equal(await statusOf(proxy.ports.http, 'm.test'), 200)
  proxy.writeRoutes('{}\n')
  t.match(await proxy.reload(), { msg: 'routes loaded', routes: 0, format: 'mulch-legacy' }, '{} after a Mulch table: loaded')
  t.match(proxy.logs.findLast((l) => l.msg === 'route file warning'), { path: '$', problem: /^is an empty object: read as Mulch's empty domains file/ }, 'with a warning')
  t.equal(await statusOf(proxy.ports.http, 'm.test'), 404)
})

t.test('{} at start loads (mulchd with no domains yet): healthy, empty', async (t) => {
  const proxy = await startProxyProcess(t, { routes: '{}\n' })
  t.ok(proxy.logs.some((l) => l.msg === 'routes loaded' && l.routes === 0 && l.format === 'mulch-legacy'))
  const health = await request(`http://127.0.0.1:${proxy.ports.admin}/healthz`)
  t.equal(health.statusCode, 200)
  await health.body.dump()
})

t.test('100,000 invalid routes: 20 problem lines and one summary, small lines; /status keeps the count', async (t) => {
  const vm = await startBackend(t)
  const proxy = await startProxyProcess(t, { routes: routesDoc([{ domain: 'a.test', target: vm.origin }]) })
  const n = 100_000
  proxy.writeRoutes(routesDoc(Array.from({ length: n }, (_, i) => ({ domain: `vm${i}.test`, target: 'ftp://x' }))))
  const from = proxy.logs.length
  const outcome = await proxy.reload()
  t.match(outcome, { msg: FAILED, errors: n })
  const lines = proxy.logs.slice(from)
  t.equal(lines.filter((l) => l.msg === 'route file problem').length, 20, '20 problems logged one per line')
  t.match(lines.find((l) => l.msg === 'route file problems not logged'), { file: proxy.routesFile, more: n - 20, summary: 'and 99,980 more (vmfront routes check --all FILE lists them)' })
  const longest = Math.max(...lines.map((l) => JSON.stringify(l).length))
  t.ok(longest < 1000, `longest line ${longest} characters`)
  const status = await (await request(`http://127.0.0.1:${proxy.ports.admin}/status`)).body.json() as { reload: { errors: unknown[], errorCount: number } }
  t.equal(status.reload.errorCount, n, '/status counts every problem')
  t.equal(status.reload.errors.length, 100, 'and lists the first 100')
  t.equal(await statusOf(proxy.ports.http, 'a.test'), 200, 'the previous table still serves')
})

t.test('a valid 100,000-route file loads through SIGHUP', async (t) => {
  const proxy = await startProxyProcess(t)
  proxy.writeRoutes(routesDoc(Array.from({ length: 100_000 }, (_, i) => ({ domain: `vm${i}.example.test`, target: `http://10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}:8080` }))))
  const started = Date.now()
  t.match(await proxy.reload(), { msg: 'routes loaded', routes: 100_000 })
  t.comment(`SIGHUP to "routes loaded": ${Date.now() - started} ms`)
  t.equal(metricValue(await proxy.metrics(), 'vmfront_routes'), 100_000)
})
