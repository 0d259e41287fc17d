/**
 * `vmfront proxy --takeover --detach` (README "Workers and takeover"; what the systemd
 * unit's ExecReload runs): the command returns 0 once the new proxy serves in the
 * background, which by then has written the PID file (systemd re-reads it when the old
 * main process exits); the old one drains and exits. A new proxy that fails before
 * serving makes the command exit 1 and leaves the running one untouched; an invalid
 * configuration is refused before anything starts.
 */
import t from 'tap'
import http from 'node:http'
import { spawn } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { join } from 'node:path'
import { startBackend } from '../helpers/backend.ts'
import { CLI, NODE, routesDoc, startProxyProcess } from '../helpers/proxy-process.ts'
import { pollUntil } from '../helpers/pebble.ts'

interface Ran { code: number | null, stdout: string, stderr: string }

/** Runs the command and resolves when IT exits (a detached proxy may keep the pipes open). */
function runCli (args: string[]): Promise<Ran> {
  const child = spawn(NODE, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (s: string) => { stdout += s })
  child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s })
  return new Promise((resolve) => {
    child.on('exit', (code) => {
      // Our ends of the pipes: the detached proxy still holds its own copies.
      child.stdout.destroy()
      child.stderr.destroy()
      resolve({ code, stdout, stderr })
    })
  })
}

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch { return false }
}

function get (port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/', headers: { host: 'app.test' }, agent: false }, (res) => {
      res.resume()
      res.on('end', () => { resolve(res.statusCode ?? 0) })
    }).on('error', reject)
  })
}

t.test('--takeover --detach returns once the new proxy serves; the PID file names it; the old one drains and exits', async (t) => {
  const vm = await startBackend(t)
  const old = await startProxyProcess(t, { routes: routesDoc([{ domain: 'app.test', target: vm.origin }]), toml: '[log]\naccess = false' })
  const configFile = join(old.dir, 'proxy.toml')
  const ran = await runCli(['proxy', '--takeover', '--detach', '--config', configFile])
  t.equal(ran.code, 0, `the command succeeded (stderr: ${ran.stderr.slice(0, 300)})`)
  const m = /serves as PID (\d+)/.exec(ran.stdout)
  t.ok(m, `it names the new PID: ${ran.stdout.split('\n').find((l) => l.includes('took over')) ?? ran.stdout.slice(0, 200)}`)
  const pid = Number(m?.[1])
  t.teardown(async () => {
    if (!alive(pid)) return
    process.kill(pid, 'SIGTERM')
    await pollUntil(() => !alive(pid), 20_000, 'the detached proxy stopped')
  })
  t.not(pid, old.child.pid, 'a new process')
  t.ok(alive(pid), 'it runs on after the command returned')
  // When the command returns, the PID file already names the new process (systemd reads it then).
  t.equal(readFileSync(old.pidFile, 'utf8'), String(pid), 'the PID file names the new process')
  // (The cause of a failed fetch is named: 'fetch failed' alone says nothing.)
  const status = await fetch(`http://127.0.0.1:${old.ports.admin}/status`).then(async (r) => await r.json() as { pid: number }, (err: Error & { cause?: Error }) => { throw new Error(`GET /status: ${err.cause?.message ?? err.message}`) })
  t.equal(status.pid, pid, 'the admin port is the new process\'s')
  t.equal(await get(old.ports.http), 200, 'the new process serves the same port')
  t.equal(await old.exited, 0, 'the old process drained and exited 0')
  t.equal(await get(old.ports.http), 200, 'still served after the old one left')
})

t.test('a new proxy that fails before serving: the command exits 1 and the running proxy keeps everything', async (t) => {
  const vm = await startBackend(t)
  const old = await startProxyProcess(t, { routes: routesDoc([{ domain: 'app.test', target: vm.origin }]), toml: '[log]\naccess = false' })
  const configFile = join(old.dir, 'proxy.toml')
  // The new config moves the admin listener to a port somebody else holds: the new proxy cannot start.
  const squatter: Server = createServer()
  await new Promise<void>((resolve) => { squatter.listen(0, '127.0.0.1', resolve) })
  t.teardown(() => { squatter.close() })
  const busy = (squatter.address() as { port: number }).port
  writeFileSync(configFile, readFileSync(configFile, 'utf8').replace('admin = "127.0.0.1:0"', `admin = "127.0.0.1:${busy}"`))
  const ran = await runCli(['proxy', '--takeover', '--detach', '--config', configFile])
  t.equal(ran.code, 1, 'the command failed')
  t.match(ran.stdout, /the new proxy exited before serving .*the running proxy keeps serving/, 'and says so')
  t.equal(readFileSync(old.pidFile, 'utf8'), String(old.child.pid), 'the PID file still names the running proxy')
  t.equal(await get(old.ports.http), 200, 'the running proxy still serves')
  t.equal(old.child.exitCode, null, 'and still runs')
  t.equal(await old.stop(), 0)
})

t.test('--detach refuses an invalid configuration before starting anything, and is only for --takeover', async (t) => {
  const old = await startProxyProcess(t, { routes: routesDoc([]), toml: '[log]\naccess = false' })
  const configFile = join(old.dir, 'proxy.toml')
  writeFileSync(configFile, readFileSync(configFile, 'utf8') + '\n[timeouts]\ndrain = "soon"\n')
  const bad = await runCli(['proxy', '--takeover', '--detach', '--config', configFile])
  t.equal(bad.code, 2, 'an invalid configuration: exit 2')
  t.match(bad.stderr, /timeouts\.drain/, 'naming the key')
  t.equal(readFileSync(old.pidFile, 'utf8'), String(old.child.pid), 'the running proxy keeps its PID file')
  const alone = await runCli(['proxy', '--detach', '--config', configFile])
  t.equal(alone.code, 2, '--detach without --takeover: bad usage')
  t.match(alone.stderr, /--detach is for --takeover/)
  t.equal(await old.stop(), 0)
})
