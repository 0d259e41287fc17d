/**
 * The daemon signals only a running vmfront proxy (issue 9, point 17): a PID file
 * whose number now belongs to another process (PID reuse) must not get that process
 * a SIGHUP, whose default action kills it. Real processes: a `sleep`, the daemon,
 * and a vmfront proxy with its PID file written with and without a newline.
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { isVmfrontProxyCommand, signalProxy } from '../../daemon-adapter/notify.ts'
import { startProxyProcess } from '../helpers/proxy-process.ts'
import { runVm, startDaemonProcess, tempDir, writeDaemonConfig } from './daemon-process.ts'

/** A live process that is not a proxy; SIGHUP would kill it. */
function startSleep (t: { teardown (fn: () => unknown): void }): { child: ChildProcess, pid: number, ended: Promise<NodeJS.Signals | null> } {
  const child = spawn('sleep', ['1000'], { stdio: 'ignore' })
  const ended = new Promise<NodeJS.Signals | null>((resolve) => { child.once('exit', (_code, signal) => { resolve(signal) }) })
  t.teardown(() => { child.kill('SIGKILL') })
  return { child, pid: child.pid as number, ended }
}

/**
 * Proves no SIGHUP reached `sleep` so far: a SIGHUP already sent would be pending,
 * and pending signals are taken lowest number first, so it would end the process
 * before our SIGTERM (no waiting on time involved).
 */
async function endedBy (s: ReturnType<typeof startSleep>): Promise<NodeJS.Signals | null> {
  if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGTERM')
  return await s.ended
}

t.test('which command lines are a vmfront proxy', async (t) => {
  const cases: [string[], boolean][] = [
    [['/usr/bin/node', '/opt/vmfront/proxy/cli.ts', 'proxy', '--config', '/etc/vmfront/proxy.toml'], true],
    [['node', 'proxy/cli.ts', 'proxy'], true],
    [['node', '--max-old-space-size=512', '/srv/app/node_modules/.bin/vmfront', 'proxy', '--mulch-config', '/etc/mulch'], true],
    [['/usr/local/bin/vmfront', 'proxy'], true],
    [['node', '/opt/vmfront/proxy/cli.js', 'proxy'], true],
    [['node', '/opt/vmfront/proxy/cli.ts', 'daemon'], false],
    [['node', '/opt/vmfront/proxy/cli.ts', 'vm', 'list'], false],
    [['node', '/opt/vmfront/proxy/cli.ts'], false],
    [['node', '/opt/other/cli.ts', 'proxy'], false],
    [['sleep', '1000'], false],
    [['nginx: master process /usr/sbin/nginx'], false],
    [['/usr/bin/python3', 'vmfront-proxy.py', 'proxy'], false],
    [['bash', '-c', 'echo vmfront proxy'], false],
    [[], false]
  ]
  for (const [argv, expected] of cases) t.equal(isVmfrontProxyCommand(argv), expected, JSON.stringify(argv))
})

t.test('a PID file naming an unrelated live process: not signalled, reported', async (t) => {
  const dir = tempDir(t)
  const pidFile = join(dir, 'proxy.pid')
  for (const newline of ['', '\n']) {
    const sleep = startSleep(t)
    writeFileSync(pidFile, `${sleep.pid}${newline}`)
    const outcome = signalProxy(pidFile)
    t.match(outcome, { status: 'not-proxy', pid: sleep.pid }, `PID file ${JSON.stringify(`${sleep.pid}${newline}`)}`)
    t.match(outcome.message, `proxy PID file ${pidFile} names process ${sleep.pid}, which runs "sleep 1000": not a vmfront proxy, so it was not signalled`)
    t.equal(await endedBy(sleep), 'SIGTERM', 'the process was alive until our SIGTERM: it never got a SIGHUP')
  }
})

t.test('the daemon beside a PID file naming a reused PID: the process lives, the client is warned', async (t) => {
  const dir = tempDir(t)
  const sleep = startSleep(t)
  writeFileSync(join(dir, 'proxy.pid'), String(sleep.pid))
  const daemon = await startDaemonProcess(t, writeDaemonConfig(dir))
  const notSignalled = await daemon.waitForLog((l) => l.msg === 'proxy not signalled')
  t.equal(notSignalled.level, 'warn')
  t.equal(notSignalled.status, 'not-proxy')
  t.match(notSignalled.reason, `names process ${sleep.pid}, which runs "sleep 1000"`)

  const vm = join(dir, 'app.toml')
  writeFileSync(vm, 'name = "app"\naddress = "10.0.0.1"\ndomains = ["app.example.com"]\n')
  const env = { VMFRONT_URL: daemon.url, VMFRONT_KEY: readFileSync(join(dir, 'data', 'api-key'), 'utf8').trim() }
  const created = await runVm(['vm', 'create', vm], env)
  t.equal(created.code, 0, 'the change itself is made')
  t.match(created.stderr, `warning: the proxy was not told to reload: proxy PID file ${join(dir, 'proxy.pid')} names process ${sleep.pid}`)
  t.equal(await endedBy(sleep), 'SIGTERM', 'sleep never got a SIGHUP')
})

t.test('a running vmfront proxy is signalled, whether its PID file ends with a newline or not', async (t) => {
  const proxy = await startProxyProcess(t, { routes: { version: 1, routes: [] } })
  const pid = proxy.child.pid as number
  for (const newline of ['', '\n']) {
    writeFileSync(proxy.pidFile, `${pid}${newline}`)
    const from = proxy.logs.length
    t.same(signalProxy(proxy.pidFile), { status: 'sent', pid }, `PID file ${JSON.stringify(`${pid}${newline}`)}`)
    await proxy.waitForLog((l) => l.msg === 'route file unchanged' || l.msg === 'routes loaded', 10_000, from)
  }
  t.equal(proxy.child.exitCode, null, 'the proxy reloaded and runs on')
})
