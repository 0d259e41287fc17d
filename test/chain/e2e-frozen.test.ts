// The frozen child: SIGSTOP under load. Within a few PING timeouts every new request
// through the parent is answered 502/504 quickly; after SIGCONT traffic resumes with
// nothing restarted. This is the Mulch lock-up that needed a watchdog to kill the process.
import t from 'tap'
import { Agent, request } from 'undici'
import { routesDoc, metricValue } from '../helpers/proxy-process.ts'
import { startBackend } from '../helpers/backend.ts'
import { startChild, startParent } from './chain-helpers.ts'

interface Sample { start: number, end: number, status: number }

t.test('SIGSTOP the child while load runs, then SIGCONT', async (t) => {
  const vm = await startBackend(t)
  // A long lease: the freeze must not end in a lease expiry (that is another test).
  const chain = { lease_ttl: '20s', ping_interval: '200ms', ping_timeout: '300ms', connect_timeout: '500ms' }
  const parent = await startParent(t, { chain })
  const child = await startChild(t, { apiPort: parent.apiPort, name: 'frozen', routes: routesDoc([{ domain: 'app.example.com', target: vm.origin }]), chain })
  await parent.waitForLog((l) => l.msg === 'chain child registered')
  const childPid = child.child.pid!

  // Load: 8 workers, each sending requests back to back, each bounded by a client timeout
  // far above what the parent should take, so a hang shows up as a slow sample.
  const agent = new Agent({ connections: 16 })
  t.teardown(() => agent.destroy())
  const samples: Sample[] = []
  let running = true
  const worker = async (): Promise<void> => {
    while (running) {
      const start = performance.now()
      let status = 0
      try {
        const res = await request(`http://127.0.0.1:${parent.ports.http}/load`, { dispatcher: agent, headers: { host: 'app.example.com' }, headersTimeout: 8000, bodyTimeout: 8000 })
        status = res.statusCode
        await res.body.dump()
      } catch {
        status = -1
      }
      samples.push({ start, end: performance.now(), status })
    }
  }
  const workers = Array.from({ length: 8 }, () => worker())
  const sleepUntil = (cond: () => boolean, ms: number): Promise<void> => new Promise((resolve, reject) => {
    const deadline = performance.now() + ms
    const tick = (): void => { if (cond()) resolve(); else if (performance.now() > deadline) reject(new Error('condition not reached')); else setTimeout(tick, 20) }
    tick()
  })

  // Healthy load first.
  await sleepUntil(() => samples.length >= 200, 10_000)
  const stoppedAt = performance.now()
  process.kill(childPid, 'SIGSTOP')
  t.teardown(() => { try { process.kill(childPid, 'SIGCONT') } catch { /* gone */ } })
  // Let the keepalive notice, then measure the frozen period for 1.5 s.
  await sleepUntil(() => performance.now() - stoppedAt > 2500, 5000)
  const contAt = performance.now()
  process.kill(childPid, 'SIGCONT')
  await sleepUntil(() => samples.some((s) => s.start > contAt && s.status === 200), 8000)
  const resumedAt = samples.find((s) => s.start > contAt && s.status === 200)!.end
  await sleepUntil(() => performance.now() - resumedAt > 700, 5000)
  running = false
  await Promise.all(workers)

  const before = samples.filter((s) => s.end < stoppedAt)
  t.ok(before.length >= 200 && before.every((s) => s.status === 200), `healthy before the stop (${before.length} requests)`)

  // Every request that started during the freeze, once the PING had time to time out
  // (interval 200 + timeout 300, ×2 for margin), was answered 502/504 fast.
  const settled = samples.filter((s) => s.start > stoppedAt + 1000 && s.end < contAt)
  t.ok(settled.length > 50, `${settled.length} requests during the frozen period`)
  t.ok(settled.every((s) => s.status === 502 || s.status === 504), `all answered 502/504 (${[...new Set(settled.map((s) => s.status))].join(',')})`)
  const slowest = Math.max(...settled.map((s) => s.end - s.start))
  t.ok(slowest < 200, `the slowest took ${Math.round(slowest)} ms`)

  // Nothing hung at any time: the worst request around the stop took about a PING timeout.
  const during = samples.filter((s) => s.start >= stoppedAt - 50 && s.start < contAt)
  const worst = Math.max(...during.map((s) => s.end - s.start))
  t.ok(worst < 1500, `no request hung: worst ${Math.round(worst)} ms (ping interval 200 + timeout 300 + connect 500)`)
  t.ok(during.every((s) => s.status !== -1), 'no client-side timeout')

  // Traffic resumes after SIGCONT without restarting anything.
  t.ok(resumedAt - contAt < 3000, `resumed ${Math.round(resumedAt - contAt)} ms after SIGCONT`)
  const tail = samples.filter((s) => s.start > resumedAt + 200)
  t.ok(tail.length > 20 && tail.every((s) => s.status === 200), `healthy again (${tail.length} requests)`)
  t.equal(child.child.pid, childPid, 'the same child process')
  t.equal(child.child.exitCode, null)
  t.equal(parent.child.exitCode, null, 'the parent never exited')

  const metrics = await parent.metrics()
  t.ok((metricValue(metrics, 'vmfront_chain_session_resets_total{child="frozen"}') ?? 0) >= 1, 'the reset is counted')
  const reset = parent.logs.find((l) => l.msg === 'chain session reset')
  t.equal(reset?.reason, 'ping timeout', 'the log says why')
  t.ok(parent.logs.some((l) => l.msg === 'chain child up again'))
})
