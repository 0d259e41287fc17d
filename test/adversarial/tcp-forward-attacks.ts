/**
 * Attacks on TCP port forwarding that a torture runner can call with bigger numbers
 * (the regression test calls them small). mulch-proxy's maps raced between reloads
 * and accepts, and its connection count drifted; here a SIGHUP storm rewrites the
 * port set while clients churn, and the proxy must stay up, keep the forward that
 * stays, apply the last file, and count exactly the connections that are open.
 */
import { metricValue } from '../helpers/proxy-process.ts'
import { pollUntil } from '../helpers/pebble.ts'
import { connectFrom, echoOnce, freePort, mulchPort, startEcho, startTcpProxy } from '../helpers/tcp-forward.ts'

interface Teardown { teardown (fn: () => unknown): void }

export interface ChurnResult {
  reloads: number
  churned: number
  /** The gauge of the kept port once the churn is over (should equal `open`). */
  gauge: number | undefined
  open: number
  /** Whether the toggled port ended as the last file said. */
  lastFileApplied: boolean
  alive: boolean
}

export async function reloadChurnAttack (t: Teardown, options: { reloads: number, clients: number }): Promise<ChurnResult> {
  const echo = await startEcho(t)
  const [kept, toggled] = [await freePort(), await freePort()]
  const withToggled = { ...mulchPort(kept, { '*': [echo.port] }), ...mulchPort(toggled, { '*': [echo.port] }) }
  const without = mulchPort(kept, { '*': [echo.port] })
  const proxy = await startTcpProxy(t, withToggled)
  const longLived = await connectFrom(kept)
  t.teardown(() => longLived.destroy())
  await echoOnce(longLived, 'hold')

  let stop = false
  let churned = 0
  const churn = async (): Promise<void> => {
    while (!stop) {
      const s = await connectFrom(kept)
      try { await echoOnce(s, `c${churned}`, 5000) } finally { s.destroy() }
      churned++
    }
  }
  const workers = Array.from({ length: options.clients }, churn)
  for (let i = 0; i < options.reloads; i++) {
    proxy.writePorts(i % 2 === 0 ? without : withToggled)
    proxy.child.kill('SIGHUP')
    // paced, so that reloads land between accepts, closes and connects to the VM
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  // The last file has no toggled port: it must be closed once the reloads settle.
  proxy.writePorts(without)
  proxy.child.kill('SIGHUP')
  stop = true
  await Promise.all(workers)
  let lastFileApplied = false
  await pollUntil(async () => {
    try {
      const s = await connectFrom(toggled)
      s.destroy()
      return false
    } catch { lastFileApplied = true; return true }
  }, 10_000, 'the toggled port closed by the last reload').catch(() => {})
  let gauge: number | undefined
  await pollUntil(async () => {
    gauge = metricValue(await proxy.metrics(), `vmfront_tcp_connections{port="${kept}"}`)
    return gauge === 1
  }, 5000, 'the gauge to settle').catch(() => {})
  const alive = proxy.child.exitCode === null && await echoOnce(longLived, 'still') === 'still'
  return { reloads: options.reloads + 1, churned, gauge, open: 1, lastFileApplied, alive }
}
