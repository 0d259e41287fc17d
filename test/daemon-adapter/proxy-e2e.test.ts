/**
 * The daemon beside a real `vmfront proxy`: a created VM is served within a second or
 * two, a second VM cannot take its domain, a rebuild under load fails no request,
 * and a deleted VM's domain answers 404.
 */
import t from 'tap'
import http from 'node:http'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { startBackend } from '../helpers/backend.ts'
import { startProxyProcess } from '../helpers/proxy-process.ts'
import { runVm, startDaemonProcess, tempDir, until } from './daemon-process.ts'

/** GET / through the proxy with a given Host header. */
function get (port: number, host: string, agent: http.Agent): Promise<{ status: number, body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/', headers: { host }, agent }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (c: string) => { body += c })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body }) })
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

t.test('daemon + real proxy', async (t) => {
  const a = await startBackend(t, (_req, res) => { res.end('A') })
  const b = await startBackend(t, (_req, res) => { res.end('B') })
  const proxy = await startProxyProcess(t, { routes: { version: 1, routes: [] } })
  const port = proxy.ports.http
  const dir = tempDir(t)
  const configFile = join(dir, 'daemon.toml')
  writeFileSync(configFile, [
    `data_dir = ${JSON.stringify(join(dir, 'data'))}`,
    `routes_file = ${JSON.stringify(proxy.routesFile)}`,
    `proxy_pid_file = ${JSON.stringify(proxy.pidFile)}`,
    'listen = "127.0.0.1:0"',
    'reload_debounce = "50ms"',
    'up_probe = "tcp"',
    // Long enough for the proxy to reload before the old revision is retired.
    'retire_drain = "300ms"'
  ].join('\n') + '\n')
  const daemon = await startDaemonProcess(t, configFile)
  const env = { VMFRONT_URL: daemon.url, VMFRONT_KEY: readFileSync(join(dir, 'data', 'api-key'), 'utf8').trim() }
  const file = (name: string, text: string): string => { const f = join(dir, `${name}.toml`); writeFileSync(f, text); return f }
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 })
  t.teardown(() => { agent.destroy() })

  t.equal((await get(port, 'app.example.com', agent)).status, 404, 'unknown before the VM exists')

  // Create: served within a couple of seconds.
  const started = Date.now()
  const created = await runVm(['vm', 'create', file('app', `name = "app"\naddress = "127.0.0.1"\ndomains = ["app.example.com->${a.port}", "secure.example.com->${a.port}"]\nredirects = [["www.app.example.com", "app.example.com", "301"]]\n`)], env)
  t.equal(created.code, 0, created.stderr)
  t.equal(created.stderr, '', 'the proxy was signalled (no warning)')
  await until('the proxy serves app.example.com', async () => (await get(port, 'app.example.com', agent)).body === 'A', 2000)
  t.ok(Date.now() - started < 2500, `served ${Date.now() - started} ms after the create`)

  // The redirect route reaches the proxy too.
  const head = (host: string): Promise<http.IncomingMessage> => new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/x?y=1', headers: { host }, agent }, (res) => { res.resume(); resolve(res) }).on('error', reject)
  })
  const www = await head('www.app.example.com')
  t.equal(www.statusCode, 301)
  t.match(www.headers.location, /^https?:\/\/app\.example\.com\/x\?y=1$/)
  // (redirect_to_https is in the file, but this proxy has no https listener to send to.)
  t.equal((await get(port, 'secure.example.com', agent)).body, 'A')

  // A second VM cannot take the domain.
  const clash = await runVm(['vm', 'create', file('clash', `name = "clash"\naddress = "127.0.0.1"\ndomains = ["app.example.com->${b.port}"]\n`)], env)
  t.equal(clash.code, 1)
  t.match(clash.stderr, 'app.example.com is already claimed by VM "app"')
  t.equal((await get(port, 'app.example.com', agent)).body, 'A')

  // Rebuild towards backend B under load: no failed request.
  let stop = false
  const seen: Record<string, number> = {}
  const failures: string[] = []
  const worker = async (): Promise<void> => {
    while (!stop) {
      try {
        const r = await get(port, 'app.example.com', agent)
        if (r.status !== 200) failures.push(`${r.status} ${r.body.slice(0, 80)}`)
        else seen[r.body] = (seen[r.body] ?? 0) + 1
      } catch (err) {
        failures.push((err as Error).message)
      }
    }
  }
  const load = Promise.all([worker(), worker(), worker(), worker()])
  await until('some load before the switch', () => (seen.A ?? 0) > 20, 5000)
  const rebuilt = await runVm(['vm', 'rebuild', 'app', file('app-b', `name = "app"\naddress = "127.0.0.1"\ndomains = ["app.example.com->${b.port}"]\nredirect_to_https = false\n`)], env)
  t.equal(rebuilt.code, 0, rebuilt.stderr)
  await until('the proxy serves r1', () => (seen.B ?? 0) > 20, 5000)
  stop = true
  await load
  t.same(failures, [], `no failed request during the switch (${seen.A ?? 0} answered by r0, ${seen.B ?? 0} by r1)`)
  t.equal((await get(port, 'app.example.com', agent)).body, 'B')
  t.equal((await get(port, 'secure.example.com', agent)).status, 404, 'a domain r1 dropped is gone')

  // Delete: 404.
  const deleted = await runVm(['vm', 'delete', 'app', '--force'], env)
  t.equal(deleted.code, 0, deleted.stderr)
  await until('app.example.com answers 404', async () => (await get(port, 'app.example.com', agent)).status === 404, 2000)
  const table = JSON.parse(readFileSync(proxy.routesFile, 'utf8'))
  t.same(table, { version: 1, routes: [] })
})
