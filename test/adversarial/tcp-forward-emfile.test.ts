// mulch-proxy dereferenced a nil connection after an accept error and crashed. Here
// the forwarder runs under `prlimit --nofile=64` and is flooded past its descriptor
// limit: accept() and the connects to the VM fail with EMFILE (libuv then closes
// the pending connections itself; an accept error Node does report is logged by the
// listener's error handler). The process must stay up, close what it cannot serve,
// keep the pairs it holds, and forward again once descriptors are free.
import t from 'tap'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import type { Socket } from 'node:net'
import { NODE, ROOT } from '../helpers/proxy-process.ts'
import { followProcess } from '../helpers/process-logs.ts'
import { connectFrom, echoOnce, freePort, startEcho } from '../helpers/tcp-forward.ts'

t.test('out of descriptors (EMFILE): no crash, nothing left hanging, serving again after', async (t) => {
  const echo = await startEcho(t)
  const listen = await freePort()
  const child = spawn('prlimit', ['--nofile=64:64', NODE, join(ROOT, 'test/adversarial/tcp-forward-emfile-child.ts'), String(listen), String(echo.port)], { stdio: ['ignore', 'pipe', 'pipe'] })
  const proc = followProcess(t, child, 'forwarder')
  const ready = await proc.waitForLog((l) => l.msg === 'ready', 10_000)
  t.same(ready.failed, [])
  // Each forwarded connection takes two descriptors in the child: 64 are gone by ~25.
  const flood: Socket[] = []
  t.teardown(() => { for (const s of flood) s.destroy() })
  // In parallel, so that the backlog holds many at once and accept() runs out.
  await Promise.all(Array.from({ length: 80 }, async () => {
    try {
      const s = await connectFrom(listen)
      s.on('error', () => {})
      flood.push(s)
    } catch { /* refused once the backlog is full: fine */ }
  }))
  // Out of descriptors, either accept() or the connect to the VM fails: both are
  // reported and survived.
  // Those served still echo; the rest were closed, none left hanging.
  const results = await Promise.all(flood.map(async (s) => {
    try { return await echoOnce(s, 'x', 2000) === 'x' ? 'served' : 'bad' } catch { return 'closed' }
  }))
  const served = results.filter((r) => r === 'served').length
  const closed = results.filter((r) => r === 'closed').length
  t.ok(served > 5 && closed > 5 && served + closed === flood.length, `${served} served, ${closed} closed out of ${flood.length} (64 descriptors)`)
  for (const s of flood) s.destroy()
  // Still alive, and serving again once descriptors are free.
  t.equal(child.exitCode, null, 'the process is still running')
  let echoed = ''
  for (let attempt = 0; attempt < 40 && echoed === ''; attempt++) {
    try {
      const s = await connectFrom(listen)
      t.teardown(() => s.destroy())
      echoed = await echoOnce(s, 'back', 500)
    } catch { await new Promise((resolve) => setTimeout(resolve, 100)) }
  }
  t.equal(echoed, 'back', 'the forward serves again')
  // mulch-proxy's count drifted: this one is read from the live set.
  for (const s of flood) s.destroy()
  let open = -1
  for (let attempt = 0; attempt < 40 && open !== 1; attempt++) {
    const from = proc.logs.length
    child.kill('SIGUSR2')
    open = (await proc.waitForLog((l) => l.msg === 'count', 2000, from)).open as number
    if (open !== 1) await new Promise((resolve) => setTimeout(resolve, 50))
  }
  t.equal(open, 1, 'the count is back to the one connection still open')
  t.equal(child.exitCode, null, 'no crash')
})
