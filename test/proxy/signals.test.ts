// Process lifecycle: pid file, SIGTERM drain of in-flight requests, a second SIGTERM, SIGUSR2 dump.
import t from 'tap'
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { request } from 'undici'
import { startProxyProcess, routesDoc, tempDir } from '../helpers/proxy-process.ts'
import { startBackend } from '../helpers/backend.ts'

t.test('SIGTERM drains an in-flight request, then exits 0 and removes the pid file', async (t) => {
  let answer!: () => void
  let arrived!: () => void
  const slowArrived = new Promise<void>((resolve) => { arrived = resolve })
  const vm = await startBackend(t, (req, res) => {
    if (req.url === '/slow') {
      arrived()
      answer = () => { res.end('slow done') }
      return
    }
    res.end('fast')
  })
  const proxy = await startProxyProcess(t, { routes: routesDoc([{ domain: 'app.test', target: vm.origin }]), toml: '[timeouts]\ndrain = "10s"' })
  // mulchd parses the PID file with strconv.Atoi: not even a trailing newline.
  t.equal(readFileSync(proxy.pidFile, 'utf8'), String(proxy.child.pid), 'pid file holds exactly the pid')

  const slow = request(`http://127.0.0.1:${proxy.ports.http}/slow`, { headers: { host: 'app.test' } })
  await slowArrived
  const from = proxy.logs.length
  proxy.child.kill('SIGTERM')
  await proxy.waitForLog((l) => l.msg === 'shutting down: draining', 5000, from)
  t.equal(proxy.child.exitCode, null, 'still running while a request is in flight')
  answer()
  const res = await slow
  t.equal(res.statusCode, 200)
  t.equal(await res.body.text(), 'slow done', 'the in-flight request was answered in full')
  t.equal(await proxy.exited, 0, 'exit status 0')
  t.notOk(existsSync(proxy.pidFile), 'pid file removed')
})

t.test('a second SIGTERM exits at once', async (t) => {
  let arrived!: () => void
  const slowArrived = new Promise<void>((resolve) => { arrived = resolve })
  const vm = await startBackend(t, () => { arrived() })
  const proxy = await startProxyProcess(t, { routes: routesDoc([{ domain: 'app.test', target: vm.origin }]), toml: '[timeouts]\ndrain = "60s"' })
  const pending = request(`http://127.0.0.1:${proxy.ports.http}/hang`, { headers: { host: 'app.test' } }).catch((err: unknown) => err)
  await slowArrived
  const from = proxy.logs.length
  proxy.child.kill('SIGTERM')
  await proxy.waitForLog((l) => l.msg === 'shutting down: draining', 5000, from)
  const started = Date.now()
  proxy.child.kill('SIGTERM')
  t.equal(await proxy.exited, 0)
  t.ok(Date.now() - started < 3000, 'exited without waiting for the drain timeout')
  await pending
})

t.test('SIGUSR2 writes a 0600 dump into data_dir with the in-flight request', async (t) => {
  let arrived!: () => void
  const slowArrived = new Promise<void>((resolve) => { arrived = resolve })
  let answer: (() => void) | undefined
  const vm = await startBackend(t, (req, res) => { answer = () => res.end('ok'); arrived() })
  const proxy = await startProxyProcess(t, { routes: routesDoc([{ domain: 'app.test', target: vm.origin }]) })
  const pending = request(`http://127.0.0.1:${proxy.ports.http}/in-flight-path`, { headers: { host: 'app.test' } })
  await slowArrived
  const from = proxy.logs.length
  proxy.child.kill('SIGUSR2')
  const line = await proxy.waitForLog((l) => l.msg === 'diagnostic dump written', 5000, from)
  const file = line.file as string
  t.equal(join(file, '..'), join(proxy.dir, 'data'), 'written into data_dir')
  t.equal(statSync(file).mode & 0o777, 0o600, 'mode 0600')
  const dump = JSON.parse(readFileSync(file, 'utf8')) as { in_flight: Array<{ path: string, age_ms: number, domain: string }> }
  t.equal(dump.in_flight.length, 1)
  t.equal(dump.in_flight[0].path, '/in-flight-path')
  t.equal(dump.in_flight[0].domain, 'app.test')
  t.ok(dump.in_flight[0].age_ms >= 0)
  t.equal(statSync(join(proxy.dir, 'data')).mode & 0o777, 0o700, 'data_dir is 0700')
  t.notOk(readdirSync(join(proxy.dir, 'data')).some((f) => f.endsWith('.tmp')), 'no temp file left')
  answer?.()
  await (await pending).body.dump()
})

t.test('an existing data_dir keeps its mode (it may be mulchd\'s); a missing one is created 0700', async (t) => {
  const shared = join(tempDir(t), 'shared-data')
  mkdirSync(shared, { mode: 0o755 })
  const proxy = await startProxyProcess(t, { dataDir: shared, routes: routesDoc([]) })
  t.equal(statSync(shared).mode & 0o777, 0o755, 'existing data_dir mode untouched')
  const fresh = await startProxyProcess(t, { routes: routesDoc([]) })
  t.equal(statSync(join(fresh.dir, 'data')).mode & 0o777, 0o700, 'missing data_dir created 0700')
  await proxy.stop()
  await fresh.stop()
})

t.test('a data_dir writable by others is warned about, and still used', async (t) => {
  const open = join(tempDir(t), 'open-data')
  mkdirSync(open)
  chmodSync(open, 0o777)
  const proxy = await startProxyProcess(t, { dataDir: open, routes: routesDoc([]) })
  const warning = proxy.logs.find((l) => l.msg === 'data_dir is writable by group or others: certificates and keys live there')
  t.ok(warning, 'warned')
  t.equal(warning?.mode, '0777')
  t.equal(statSync(open).mode & 0o777, 0o777, 'mode untouched')
  await proxy.stop()
})
