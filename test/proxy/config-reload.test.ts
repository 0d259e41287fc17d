// SIGHUP reloads the proxy's TOML (SPEC §12), under a steady keep-alive load that
// must see no failed request: the access log turned off, a new trusted proxy, a new
// rate profile a route already names, the HTTP listener moved to a new port (bound
// before the old one stops accepting), an invalid TOML (nothing changes, counted,
// logged with file, line and key), a port that cannot be bound, then a fixed TOML.
import t from 'tap'
import http from 'node:http'
import net from 'node:net'
import { renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { deadPort, startBackend } from '../helpers/backend.ts'
import { metricValue, routesDoc, startProxyProcess, type ProxyProcess } from '../helpers/proxy-process.ts'

/** Keep-alive clients looping GETs on `target.port` until stopped; every outcome counted. */
function startLoad (target: { port: number }, clients: number): { ok: () => number, failures: string[], stop: () => Promise<void> } {
  let running = true
  let ok = 0
  const failures: string[] = []
  const loops: Array<Promise<void>> = []
  const agents: http.Agent[] = []
  const once = (agent: http.Agent): Promise<void> => new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port: target.port, path: '/load', headers: { host: 'load.test' }, agent }, (res) => {
      res.resume()
      res.on('end', () => {
        if (res.statusCode === 200) ok++
        else failures.push(`status ${res.statusCode ?? 0}`)
        resolve()
      })
    })
    req.on('error', (err: NodeJS.ErrnoException) => {
      failures.push(`${err.code ?? err.message} on port ${target.port}${req.reusedSocket ? ' (reused socket)' : ''}`)
      resolve()
    })
  })
  for (let i = 0; i < clients; i++) {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
    agents.push(agent)
    loops.push((async () => { while (running) await once(agent) })())
  }
  return {
    ok: () => ok,
    failures,
    stop: async () => {
      running = false
      await Promise.all(loops)
      for (const a of agents) a.destroy()
    }
  }
}

function get (port: number, host: string, headers: Record<string, string> = {}): Promise<{ status: number, body: string }> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/', headers: { host, ...headers }, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { body += c })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body }) })
    }).on('error', reject)
  })
}

function connectError (port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    s.once('connect', () => { s.destroy(); resolve(undefined) })
    s.once('error', (err: NodeJS.ErrnoException) => { resolve(err.code) })
  })
}

t.test('SIGHUP applies the TOML live under load, and an invalid one changes nothing', async (t) => {
  const vm = await startBackend(t)
  // Fixed ports: a TOML rewritten with the port a "port 0" listener got would be a move.
  const [httpPort, adminPort] = [await deadPort(), await deadPort()]
  const proxy: ProxyProcess = await startProxyProcess(t, {
    listen: `[listen]\nhttp = "127.0.0.1:${httpPort}"\nhttps = ""\nadmin = "127.0.0.1:${adminPort}"`,
    routes: routesDoc([
      { domain: 'load.test', target: vm.origin },
      { domain: 'limited.test', target: vm.origin, rate_profile: 'strict' }
    ]),
    toml: '[timeouts]\ndrain = "2s"\n'
  })
  const configFile = join(proxy.dir, 'proxy.toml')
  const head = [
    `data_dir = ${JSON.stringify(join(proxy.dir, 'data'))}`,
    `routes_file = ${JSON.stringify(proxy.routesFile)}`,
    `pid_file = ${JSON.stringify(proxy.pidFile)}`
  ].join('\n')
  const listen = (http: number): string => `[listen]\nhttp = "127.0.0.1:${http}"\nhttps = ""\nadmin = "127.0.0.1:${proxy.ports.admin}"\n`
  const writeToml = (body: string): void => {
    writeFileSync(configFile + '.tmp', `${head}\n${body}`)
    renameSync(configFile + '.tmp', configFile)
  }
  /** SIGHUP, and the config reload's outcome line. */
  const sighup = async (): Promise<Record<string, unknown>> => {
    const from = proxy.logs.length
    proxy.child.kill('SIGHUP')
    const line = await proxy.waitForLog((l) => l.msg === 'config reloaded' || l.msg === 'config unchanged' || (l.msg === 'config reload failed: keeping the running configuration' && l.reason !== undefined), 10_000, from)
    // The route file's reload follows in the same SIGHUP: wait for it too, so reloads never overlap.
    await proxy.waitForLog((l) => l.msg === 'routes loaded' || l.msg === 'route file unchanged' || l.msg === 'route reload failed: still serving the previous table', 10_000, from)
    return line
  }
  const metric = async (series: string): Promise<number | undefined> => metricValue(await proxy.metrics(), series)
  const realIp = async (port: number): Promise<unknown> => (JSON.parse((await get(port, 'load.test', { 'x-forwarded-for': '203.0.113.7' })).body) as { headers: Record<string, string> }).headers['x-real-ip']

  const target = { port: proxy.ports.http }
  const load = startLoad(target, 4)
  t.teardown(() => load.stop())
  const served = async (n: number): Promise<void> => {
    const until = load.ok() + n
    const deadline = Date.now() + 5000
    while (load.ok() < until) {
      if (Date.now() > deadline) throw new Error(`load stalled: ${load.failures.slice(0, 5).join('; ')} (${load.failures.length} failures)`)
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  }
  await served(50)

  t.equal(await realIp(target.port), '127.0.0.1', 'at start, X-Forwarded-For from 127.0.0.1 is not believed')
  t.equal((await get(target.port, 'limited.test')).status, 200)
  t.equal((await get(target.port, 'limited.test')).status, 200, 'the route names a profile the TOML does not have yet: unlimited')
  t.ok(proxy.logs.some((l) => l.msg === 'access' && l.host === 'load.test'), 'access lines at start')

  // (a) access log off, (b) a new trusted proxy, (c) a new rate profile, in one reload
  const strict = '[[rate_profile]]\nname = "strict"\nlimit_burst_requests = 1\nlimit_requests_per_second = 0.01\n'
  const liveBody = (port: number, access: boolean): string => `${listen(port)}[log]\naccess = ${String(access)}\n[headers]\ntrusted_proxies = ["127.0.0.1/32"]\n[timeouts]\ndrain = "2s"\n${strict}`
  writeToml(liveBody(target.port, false))
  const applied = await sighup()
  t.equal(applied.msg, 'config reloaded')
  t.same([...applied.applied as string[]].sort(), ['headers.trusted_proxies', 'log.access', 'rate_profile'])
  const afterReload = proxy.logs.length
  await served(100)
  t.equal(await realIp(target.port), '203.0.113.7', 'X-Forwarded-For from the new trusted proxy is believed')
  t.equal((await get(target.port, 'limited.test')).status, 200, 'the new profile: the burst of one')
  t.equal((await get(target.port, 'limited.test')).status, 429, 'the new profile is enforced on the route that named it')
  t.equal(proxy.logs.slice(afterReload).filter((l) => l.msg === 'access').length, 0, 'no access line after the reload')
  t.equal(await metric('vmfront_config_last_reload_successful'), 1)
  t.equal(await metric('vmfront_config_reloads_total{result="success"}'), 1)
  t.ok((await metric('vmfront_config_last_reload_success_timestamp_seconds') ?? 0) > Date.now() / 1000 - 60)

  // (d) the HTTP listener moves: bound first, the old one stops accepting, open connections finish
  const oldPort = target.port
  const newPort = await deadPort()
  writeToml(liveBody(newPort, false))
  const moved = await sighup()
  t.same(moved.applied, ['listen.http'])
  t.same(moved.listeners, { http: newPort })
  t.equal(await connectError(oldPort), 'ECONNREFUSED', 'the old port accepts no new connection')
  await served(50)
  target.port = newPort
  await served(100)
  t.equal((await get(newPort, 'load.test')).status, 200, 'the new port serves')

  // (e) an invalid TOML: nothing changes, the error names file, line and key, counted
  writeToml(`${listen(newPort)}[log]\naccess = true\nlevel = "loud"\n[headers]\ntrusted_proxies = []\n`)
  const from = proxy.logs.length
  const refused = await sighup()
  t.equal(refused.msg, 'config reload failed: keeping the running configuration')
  const problem = proxy.logs.slice(from).find((l) => l.key === 'log.level')
  t.match(problem, { file: configFile, line: 10, key: 'log.level', problem: /must be one of/ }, 'the error names file, line and key')
  await served(50)
  t.equal(await realIp(newPort), '203.0.113.7', 'the trusted proxies still in force')
  t.equal(proxy.logs.slice(from).filter((l) => l.msg === 'access').length, 0, 'the access log still off')
  t.equal(await metric('vmfront_config_last_reload_successful'), 0, 'the gauge says the reload failed, though the route file loaded')
  t.equal(await metric('vmfront_config_reloads_total{result="failure"}'), 1)

  // a valid TOML whose new address cannot be bound: the old listener keeps serving
  writeToml(liveBody(vm.port, true))
  const unbound = await sighup()
  t.equal(unbound.reason, 'listener not bound')
  t.equal(await metric('vmfront_config_reloads_total{result="failure"}'), 2)
  await served(50)
  t.equal((await get(newPort, 'load.test')).status, 200, 'still serving on the running port')

  // the fixed TOML: applied, the gauge back to 1
  writeToml(liveBody(newPort, true))
  const fixed = await sighup()
  t.equal(fixed.msg, 'config reloaded')
  t.same(fixed.applied, ['log.access'])
  await served(50)
  t.equal(await metric('vmfront_config_last_reload_successful'), 1)
  t.ok(proxy.logs.some((l, i) => i > proxy.logs.indexOf(fixed) && l.msg === 'access'), 'access lines again')

  await load.stop()
  t.same(load.failures, [], `no failed request in the load (${load.ok()} served)`)
})
