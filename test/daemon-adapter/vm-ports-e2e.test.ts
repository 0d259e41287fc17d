/**
 * The daemon publishes a VM's public port (Mulch's VM TOML syntax) and a real
 * `vmfront proxy` forwards it; deleting the VM closes the port (SPEC §11).
 */
import t from 'tap'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { startProxyProcess } from '../helpers/proxy-process.ts'
import { connectFrom, echoOnce, freePort, startEcho } from '../helpers/tcp-forward.ts'
import { runVm, startDaemonProcess, tempDir, until } from './daemon-process.ts'

t.test('a VM\'s public port is forwarded by the proxy, and closed with the VM', async (t) => {
  const echo = await startEcho(t)
  const publicPort = await freePort()
  const proxy = await startProxyProcess(t, { routes: { version: 1, routes: [] } })
  const dir = tempDir(t)
  const configFile = join(dir, 'daemon.toml')
  writeFileSync(configFile, [
    `data_dir = ${JSON.stringify(join(dir, 'data'))}`,
    `routes_file = ${JSON.stringify(proxy.routesFile)}`,
    `proxy_pid_file = ${JSON.stringify(proxy.pidFile)}`,
    'listen = "127.0.0.1:0"',
    'reload_debounce = "50ms"'
  ].join('\n') + '\n')
  const daemon = await startDaemonProcess(t, configFile)
  const env = { VMFRONT_URL: daemon.url, VMFRONT_KEY: readFileSync(join(dir, 'data', 'api-key'), 'utf8').trim() }
  const vmFile = join(dir, 'db.toml')
  writeFileSync(vmFile, `name = "db"\naddress = "127.0.0.1"\nports = ["${echo.port}/tcp->@PUBLIC:${publicPort}"]\n`)
  const created = await runVm(['vm', 'create', vmFile], env)
  t.equal(created.code, 0, created.stderr)
  t.match(JSON.parse(readFileSync(proxy.routesFile, 'utf8')), { ports: [{ listen: `:${publicPort}`, target: `127.0.0.1:${echo.port}` }] }, 'the route file carries the port')
  await proxy.waitForLog((l) => l.msg === 'tcp forward port open' && l.listen === `*:${publicPort}`, 5000)
  const s = await connectFrom(publicPort)
  t.teardown(() => s.destroy())
  t.equal(await echoOnce(s, 'ssh?'), 'ssh?', 'the public port reaches the VM')

  const deleted = await runVm(['vm', 'delete', 'db', '--force'], env)
  t.equal(deleted.code, 0, deleted.stderr)
  await until('the port is closed', async () => {
    try { (await connectFrom(publicPort)).destroy(); return false } catch { return true }
  }, 5000)
  t.pass('the deleted VM\'s port no longer accepts')
})
