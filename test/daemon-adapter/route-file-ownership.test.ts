/**
 * The daemon never overwrites a route file it did not write (issue 9, point 17; SPEC
 * §14 on §8). Real processes: a `vmfront proxy` serving a hand-written file, the
 * daemon refusing to start beside it (exit 2, naming the file and the command), the
 * proxy untouched, `vmfront vm import-routes` adopting the routes as static VMs, and
 * the daemon then writing the same routes. Also Mulch's legacy format, a file
 * hand-written while the daemon runs, and imports that must change nothing.
 */
import t from 'tap'
import http from 'node:http'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseRouteFileText } from '../../proxy/route-table.ts'
import type { Route } from '../../proxy/route-table.ts'
import { startBackend } from '../helpers/backend.ts'
import { startProxyProcess } from '../helpers/proxy-process.ts'
import { runCli, runVm, startDaemonProcess, tempDir, until, writeDaemonConfig } from './daemon-process.ts'

/** GET / through the proxy with a Host header: status, body and Location. */
function get (port: number, host: string): Promise<{ status: number, body: string, location?: string }> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/', headers: { host }, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (c: string) => { body += c })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body, location: res.headers.location }) })
    }).on('error', reject)
  })
}

/** A route file's routes without the `vm` label, sorted: what the proxy does with them. */
function served (text: string): Omit<Route, 'vm'>[] {
  const parsed = parseRouteFileText(text)
  if (!parsed.ok) throw new Error(`invalid route file: ${JSON.stringify(parsed.errors)}`)
  return parsed.table.routes.map(({ vm: _vm, ...rest }) => rest).sort((a, b) => (a.domain < b.domain ? -1 : 1))
}

t.test('hand-written route file beside a live proxy: refused, untouched, then imported and served', async (t) => {
  const a = await startBackend(t, (_req, res) => { res.end('A') })
  const b = await startBackend(t, (_req, res) => { res.end('B') })
  const handWritten = JSON.stringify({
    version: 1,
    routes: [
      { domain: 'app.test', target: `http://127.0.0.1:${a.port}` },
      { domain: 'api.test', target: `http://127.0.0.1:${b.port}` },
      { domain: 'www.app.test', redirect_to: 'app.test', redirect_code: 301 },
      { domain: 'blog.test', target: `http://127.0.0.1:${b.port}`, rate_profile: 'strict', redirect_to_https: true }
    ]
  }, null, 2)
  const proxy = await startProxyProcess(t, { routes: handWritten, toml: '[[rate_profile]]\nname = "strict"\nlimit_burst_requests = 100\nlimit_requests_per_second = 100\n' })
  const port = proxy.ports.http
  t.equal((await get(port, 'app.test')).body, 'A')

  const dir = tempDir(t)
  const configFile = writeDaemonConfig(dir)
  writeFileSync(configFile, readFileSync(configFile, 'utf8')
    .replace(/^routes_file = .*$/m, `routes_file = ${JSON.stringify(proxy.routesFile)}`)
    .replace(/^proxy_pid_file = .*$/m, `proxy_pid_file = ${JSON.stringify(proxy.pidFile)}`))

  // 1. The daemon refuses to start, says how to proceed, and touches nothing.
  const logsBefore = proxy.logs.length
  const refused = await runCli(['daemon', '--config', configFile])
  t.equal(refused.code, 2, 'exit 2')
  t.match(refused.stderr, `the route file ${proxy.routesFile} was not written by this daemon (it holds 4 routes the daemon did not write)`)
  t.match(refused.stderr, `vmfront vm import-routes ${proxy.routesFile} --config ${configFile}`, 'names the command')
  t.match(refused.stderr, 'move the file away')
  t.notMatch(refused.stderr, /undefined|\n\s+at /, 'no undefined, no stack')
  t.equal(readFileSync(proxy.routesFile, 'utf8'), handWritten, 'the file is byte for byte as it was')
  t.notOk(proxy.logs.slice(logsBefore).some((l) => l.msg === 'routes loaded'), 'the proxy was not told to reload')
  t.equal((await get(port, 'app.test')).body, 'A', 'and still serves the hand-written routes')

  // 2. import-routes adopts them: one VM per address and settings.
  const imported = await runVm(['vm', 'import-routes', proxy.routesFile, '--config', configFile])
  t.equal(imported.code, 0, imported.stderr)
  t.match(imported.stdout, `imported 4 routes (v1 format) of ${proxy.routesFile} as 2 static VMs`)
  t.match(imported.stderr, `the daemon may now overwrite ${proxy.routesFile}`)
  t.equal(readFileSync(proxy.routesFile, 'utf8'), handWritten, 'importing does not write the file')

  // 3. The daemon starts, writes the same routes and has the proxy reload them.
  const reloads = proxy.logs.length
  const daemon = await startDaemonProcess(t, configFile)
  await daemon.waitForLog((l) => l.msg === 'proxy signalled to reload routes')
  await proxy.waitForLog((l) => l.msg === 'routes loaded', 10_000, reloads)
  const written = readFileSync(proxy.routesFile, 'utf8')
  t.not(written, handWritten, 'the daemon wrote its own file')
  t.same(served(written), served(handWritten), 'with the same routes (domains, targets, ports, redirects, redirect_to_https, rate_profile)')
  t.equal((await get(port, 'app.test')).body, 'A')
  t.equal((await get(port, 'api.test')).body, 'B')
  t.match(await get(port, 'www.app.test'), { status: 301, location: /app\.test\/$/ })

  const key = readFileSync(join(dir, 'data', 'api-key'), 'utf8').trim()
  const listed = JSON.parse((await runVm(['vm', 'list', '--json'], { VMFRONT_URL: daemon.url, VMFRONT_KEY: key })).stdout) as { name: string, address: string, definition: Record<string, unknown> }[]
  t.same(listed.map((vm) => [vm.name, vm.address, vm.definition.domains, vm.definition.redirects, vm.definition.redirect_to_https, vm.definition.rate_profile]), [
    ['127-0-0-1', '127.0.0.1', [`app.test->${a.port}`, `api.test->${b.port}`], [['www.app.test', 'app.test', '301']], false, undefined],
    ['127-0-0-1-2', '127.0.0.1', [`blog.test->${b.port}`], [], true, 'strict']
  ])

  // 4. From now on the file is the daemon's: a restart rewrites it without complaint.
  await daemon.stop()
  const again = await startDaemonProcess(t, configFile)
  t.ok(again.logs.some((l) => l.msg === 'routes restored from the registry' && l.routes === 4))
})

t.test("Mulch's legacy file (no trailing newline) imports as static VMs", async (t) => {
  const dir = tempDir(t)
  const configFile = writeDaemonConfig(dir)
  const routesFile = join(dir, 'routes.json')
  const legacy = JSON.stringify({
    'shop.example.com': { Name: 'shop.example.com', VMName: 'Shop_1', DestinationHost: '10.104.0.7', DestinationPort: 8080, RedirectToHTTPS: true, RateProfile: 'wp', RedirectTo: '', RedirectCode: 0 },
    'www.shop.example.com': { Name: 'www.shop.example.com', VMName: 'Shop_1', RedirectTo: 'shop.example.com', RedirectCode: 308, RedirectToHTTPS: true, RateProfile: 'wp', DestinationHost: '', DestinationPort: 0 },
    'static.example.com': { Name: 'static.example.com', VMName: 'Shop_1', DestinationHost: '10.104.0.7', DestinationPort: 80, RedirectToHTTPS: true, RateProfile: 'wp', RedirectTo: '', RedirectCode: 0 },
    'wiki.example.com': { Name: 'wiki.example.com', VMName: 'wiki', DestinationHost: 'fd00::9', DestinationPort: 3000, RedirectToHTTPS: false, RateProfile: '', RedirectTo: '', RedirectCode: 0 }
  })
  writeFileSync(routesFile, legacy)

  const refused = await runCli(['daemon', '--config', configFile])
  t.equal(refused.code, 2)
  t.match(refused.stderr, 'it holds 4 routes the daemon did not write')

  const imported = await runVm(['vm', 'import-routes', routesFile, '--config', configFile, '--json'])
  t.equal(imported.code, 0, imported.stderr)
  const report = JSON.parse(imported.stdout) as { format: string, vms: { name: string, address: string, definition: Record<string, unknown> }[] }
  t.equal(report.format, 'mulch-legacy')
  t.same(report.vms.map((vm) => [vm.name, vm.address, vm.definition]), [
    ['shop_1', '10.104.0.7', { name: 'shop_1', domains: ['shop.example.com->8080', 'static.example.com'], redirects: [['www.shop.example.com', 'shop.example.com', '308']], redirect_to_https: true, rate_profile: 'wp', address: '10.104.0.7' }],
    ['wiki', 'fd00::9', { name: 'wiki', domains: ['wiki.example.com->3000'], redirects: [], redirect_to_https: false, address: 'fd00::9' }]
  ])

  const daemon = await startDaemonProcess(t, configFile)
  t.ok(daemon.logs.some((l) => l.msg === 'route file written' && l.routes === 4))
  const written = readFileSync(routesFile, 'utf8')
  t.match(parseRouteFileText(written), { ok: true, table: { format: 'v1' } }, 'rewritten in the v1 format')
  t.same(served(written), served(legacy), 'the same routes')
})

t.test('a file hand-written while the daemon runs is not overwritten by the next change', async (t) => {
  const dir = tempDir(t)
  const configFile = writeDaemonConfig(dir)
  const routesFile = join(dir, 'routes.json')
  const daemon = await startDaemonProcess(t, configFile)
  const env = { VMFRONT_URL: daemon.url, VMFRONT_KEY: readFileSync(join(dir, 'data', 'api-key'), 'utf8').trim() }
  const vmFile = (name: string, domain: string): string => {
    const f = join(dir, `${name}.toml`)
    writeFileSync(f, `name = "${name}"\naddress = "10.0.0.1"\ndomains = ["${domain}"]\n`)
    return f
  }
  t.equal((await runVm(['vm', 'create', vmFile('one', 'one.example.com')], env)).code, 0)

  const edited = JSON.stringify({ version: 1, routes: [{ domain: 'one.example.com', target: 'http://10.0.0.1:80' }, { domain: 'hand.example.com', target: 'http://10.0.0.2:80' }] })
  writeFileSync(routesFile, edited)
  const from = daemon.logs.length
  const create = await runVm(['vm', 'create', vmFile('two', 'two.example.com')], env)
  t.equal(create.code, 2, 'the change is answered with the reason')
  t.match(create.stderr, `the route file ${routesFile} was not written by this daemon (it holds 2 routes the daemon did not write)`)
  t.match(create.stderr, 'then send the daemon SIGHUP')
  t.equal(readFileSync(routesFile, 'utf8'), edited, 'the file is left as it was')
  await daemon.waitForLog((l) => l.msg === 'route file not written' && l.level === 'error', 5000, from)

  // Importing while the daemon runs, then SIGHUP: the daemon writes everything.
  const imported = await runVm(['vm', 'import-routes', routesFile, '--config', configFile])
  t.equal(imported.code, 1, 'one.example.com is already a VM of the registry')
  t.match(imported.stderr, 'one.example.com is already claimed by VM "one"')
  writeFileSync(routesFile, JSON.stringify({ version: 1, routes: [{ domain: 'hand.example.com', target: 'http://10.0.0.2:80' }] }))
  t.equal((await runVm(['vm', 'import-routes', routesFile, '--config', configFile])).code, 0)
  daemon.child.kill('SIGHUP')
  await until('the daemon writes the route file', () => {
    const parsed = parseRouteFileText(readFileSync(routesFile, 'utf8'))
    return parsed.ok && parsed.table.routes.length === 3
  }, 5000)
  t.same(served(readFileSync(routesFile, 'utf8')).map((r) => r.domain), ['hand.example.com', 'one.example.com', 'two.example.com'])
})

t.test('imports that cannot be made change nothing', async (t) => {
  const dir = tempDir(t)
  const configFile = writeDaemonConfig(dir)
  const file = join(dir, 'import.json')
  const importing = async (doc: unknown): Promise<{ code: number | null, stdout: string, stderr: string }> => {
    writeFileSync(file, typeof doc === 'string' ? doc : JSON.stringify(doc))
    return await runVm(['vm', 'import-routes', file, '--config', configFile])
  }

  const orphan = await importing({ version: 1, routes: [{ domain: 'a.test', target: 'http://10.0.0.1:80' }, { domain: 'old.test', redirect_to: 'elsewhere.org' }] })
  t.equal(orphan.code, 2)
  t.match(orphan.stderr, `${file}: route "old.test": redirects to elsewhere.org, which no route of the file serves`)

  const invalid = await importing({ version: 1, routes: [{ domain: 'A.test', target: 'http://10.0.0.1:80' }] })
  t.equal(invalid.code, 2)
  t.match(invalid.stderr, `${file}: $.routes[0].domain: "A.test" must be lower-case`)

  t.equal((await importing({ version: 1, routes: [{ domain: 'a.test', target: 'http://10.0.0.1:80', vm: 'a' }] })).code, 0)
  const clash = await importing({ version: 1, routes: [{ domain: 'b.test', target: 'http://10.0.0.2:80', vm: 'b' }, { domain: 'a.test', target: 'http://10.0.0.3:80' }] })
  t.equal(clash.code, 1)
  t.match(clash.stderr, 'a.test is already claimed by VM "a"')
  const same = await importing({ version: 1, routes: [{ domain: 'c.test', target: 'http://10.0.0.1:80', vm: 'a' }] })
  t.equal(same.code, 0, 'a name already taken gets a suffix')
  t.match(same.stdout, /\ba-2\t10\.0\.0\.1\tc\.test->80/)

  const libvirt = writeDaemonConfig(tempDir(t), 'driver = "libvirt"')
  const refused = await runVm(['vm', 'import-routes', file, '--config', libvirt])
  t.equal(refused.code, 2)
  t.match(refused.stderr, 'import-routes adopts routes as static VMs, which the libvirt driver')

  // Only the two good imports are in the registry.
  const daemonDir = join(dir, 'data')
  const { openRegistry } = await import('../../daemon-adapter/registry.ts')
  const registry = openRegistry(join(daemonDir, 'registry.sqlite'))
  t.teardown(() => { registry.close() })
  t.same(registry.list().map((vm) => [vm.name, [...registry.domainsOf(vm.name)]]), [['a', ['a.test']], ['a-2', ['c.test']]])
})
