/**
 * `vmfront proxy --takeover` (SPEC §12) under steady load: 8 clients, keep-alive
 * and new connections, no refused connection and no failed request; the old
 * process's open WebSocket finishes its exchange; the PID file and the admin
 * listener (same port) pass to the new process; the old one drains and exits 0.
 */
import t from 'tap'
import http from 'node:http'
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { startBackend } from '../helpers/backend.ts'
import { CLI, NODE, routesDoc, startProxyProcess } from '../helpers/proxy-process.ts'
import { followProcess } from '../helpers/process-logs.ts'
import { pollUntil } from '../helpers/pebble.ts'
import { openUpgrade, upgradeRequest } from '../helpers/websocket-client.ts'

function get (port: number, agent: http.Agent | false): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', headers: { host: 'app.test' }, agent }, (res) => {
      res.resume()
      res.on('end', () => { resolve(res.statusCode ?? 0) })
      res.on('error', reject)
    })
    req.on('error', reject)
  })
}

/** A masked client text frame (payload < 126 bytes). */
function textFrame (text: string): Buffer {
  const payload = Buffer.from(text)
  const mask = Buffer.from([1, 2, 3, 4])
  const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]))
  return Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked])
}

for (const workers of [1, 2]) {
  t.test(`--takeover with ${workers} worker(s) under load: nothing refused, nothing failed, the old WebSocket finishes`, async (t) => {
    const vm = await startBackend(t)
    const old = await startProxyProcess(t, { routes: routesDoc([{ domain: 'app.test', target: vm.origin }]), toml: `[server]\nworkers = ${workers}\n[log]\naccess = false` })
    const configFile = join(old.dir, 'proxy.toml')
    const port = old.ports.http

    const ws = await openUpgrade(port, upgradeRequest('app.test'))
    t.equal(ws.status, 101, 'a WebSocket open on the old process')
    const echoes: string[] = []
    ws.socket.on('data', (chunk: string) => { echoes.push(chunk) })

    const agent = new http.Agent({ keepAlive: true, maxSockets: 4 })
    t.teardown(() => { agent.destroy() })
    let stop = false
    const outcome = { ok: 0, failed: [] as string[] }
    const loops = Array.from({ length: 8 }, async (_, i) => {
      while (!stop) {
        try {
          const status = await get(port, i % 2 === 0 ? agent : false)
          if (status === 200) outcome.ok++
          else outcome.failed.push(`status ${status}`)
        } catch (err) { outcome.failed.push((err as NodeJS.ErrnoException).code ?? String(err)) }
      }
    })
    await pollUntil(() => outcome.ok > 200, 15_000, 'steady load on the old process')

    const child = spawn(NODE, [CLI, 'proxy', '--takeover', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] })
    const fresh = followProcess(t, child, 'new proxy')
    await fresh.waitForLog((l) => l.msg === 'took over: the previous process drains and exits', 30_000)
    t.equal(readFileSync(old.pidFile, 'utf8'), String(child.pid), 'the PID file names the new process')
    const health = await fetch(`http://127.0.0.1:${old.ports.admin}/status`)
    t.equal(((await health.json()) as { pid: number }).pid, child.pid, 'the admin port is the new process\'s')

    // The old process drains: its WebSocket still works, then ends cleanly.
    ws.socket.write(textFrame('still here'))
    await pollUntil(() => echoes.join('').includes('echo:still here'), 5000, 'the echo through the old process')
    t.pass('the old process\'s WebSocket finished its exchange')
    await ws.close()
    t.equal(await old.exited, 0, 'the old process drained and exited 0')

    const okAtExit = outcome.ok
    await pollUntil(() => outcome.ok > okAtExit + 200, 15_000, 'load on the new process')
    stop = true
    await Promise.all(loops)
    t.same(outcome.failed, [], `no refused connection and no failed request (${outcome.ok} ok)`)
    if (workers === 1) {
      // And again: the new process can be taken over in turn (its takeover socket survived the old one's exit).
      const third = spawn(NODE, [CLI, 'proxy', '--takeover', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] })
      const next = followProcess(t, third, 'third proxy')
      await next.waitForLog((l) => l.msg === 'took over: the previous process drains and exits', 30_000)
      t.equal(await fresh.exited, 0, 'the second process drained and exited')
      t.equal(await get(port, false), 200, 'the third serves the same port')
      t.equal(await next.stop(), 0)
      return
    }
    t.equal(await fresh.stop(), 0)
  })
}

t.test('--takeover hands over TCP forward ports too: a kept connection finishes on the old process, new ones reach the new', async (t) => {
  const { startEcho, startTcpProxy, mulchPort, connectFrom, echoOnce, freePort } = await import('../helpers/tcp-forward.ts')
  const echo = await startEcho(t)
  const listenPort = await freePort()
  const old = await startTcpProxy(t, mulchPort(listenPort, { '*': [echo.port] }), { toml: '[server]\nworkers = 2' })
  const kept = await connectFrom(listenPort)
  t.equal(await echoOnce(kept, 'before'), 'before', 'a forwarded connection through the old process')
  const child = spawn(NODE, [CLI, 'proxy', '--takeover', '--config', join(old.dir, 'proxy.toml')], { stdio: ['ignore', 'pipe', 'pipe'] })
  const fresh = followProcess(t, child, 'new proxy')
  await fresh.waitForLog((l) => l.msg === 'took over: the previous process drains and exits', 30_000)
  t.notOk(fresh.logs.some((l) => l.msg === 'tcp forward port cannot be bound: the other ports still apply'), 'the new process did not have to bind the port')
  const next = await connectFrom(listenPort)
  t.equal(await echoOnce(next, 'after'), 'after', 'a new connection is forwarded by the new process')
  t.equal(await echoOnce(kept, 'still'), 'still', 'the kept connection still works while the old process drains')
  kept.end()
  next.end()
  t.equal(await old.exited, 0, 'the old process exits once its connection ended')
  t.equal(await fresh.stop(), 0)
})
