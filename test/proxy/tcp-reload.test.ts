// TCP forwards under SIGHUP and SIGTERM (SPEC §11): a reload adds, removes and keeps
// forwards while traffic flows (a kept forward's connection is never cut), a port
// that cannot be bound is reported while the rest apply, a bad port file keeps
// everything, and SIGTERM drains open connections.
import t from 'tap'
import net from 'node:net'
import { metricValue } from '../helpers/proxy-process.ts'
import { connectFrom, echoOnce, freePort, mulchPort, readToEnd, startEcho, startTcpProxy } from '../helpers/tcp-forward.ts'

async function reloadPorts (proxy: Awaited<ReturnType<typeof startTcpProxy>>): Promise<void> {
  const from = proxy.logs.length
  proxy.child.kill('SIGHUP')
  // the port reload follows the route reload and logs a line per opened/closed port or failure
  await proxy.waitForLog((l) => l.msg === 'routes loaded' || l.msg === 'route file unchanged' || String(l.msg).startsWith('route reload failed'), 5000, from)
}

async function refusedOrClosed (port: number): Promise<boolean> {
  try {
    const s = await connectFrom(port)
    s.write('x')
    const r = await readToEnd(s, 2000)
    return r.data.length === 0
  } catch { return true }
}

t.test('a reload adds, removes and keeps forwards; kept connections are not cut', async (t) => {
  const echoA = await startEcho(t)
  const echoB = await startEcho(t)
  const [kept, removed, added, changed] = [await freePort(), await freePort(), await freePort(), await freePort()]
  const proxy = await startTcpProxy(t, {
    ...mulchPort(kept, { '*': [echoA.port], '127.0.0.21': [echoB.port] }),
    ...mulchPort(removed, { '*': [echoA.port] }),
    ...mulchPort(changed, { '127.0.0.22': [echoA.port] })
  })
  const onKept = await connectFrom(kept)
  const onKeptVm = await connectFrom(kept, '127.0.0.21')
  const onRemoved = await connectFrom(removed)
  const onChanged = await connectFrom(changed, '127.0.0.22')
  t.teardown(() => { for (const s of [onKept, onKeptVm, onRemoved, onChanged]) s.destroy() })
  for (const s of [onKept, onKeptVm, onRemoved, onChanged]) t.equal(await echoOnce(s, 'before'), 'before')
  t.equal(echoB.sockets.size, 1, 'a listed source gets its own forward before the public one')

  // traffic keeps flowing on the kept connection while the reload happens
  let stop = false
  let rounds = 0
  const traffic = (async () => {
    while (!stop) {
      const text = `round ${rounds++};`
      if (await echoOnce(onKept, text) !== text) throw new Error('bad echo')
    }
  })()
  const removedEnd = readToEnd(onRemoved, 5000)
  const changedEnd = readToEnd(onChanged, 5000)
  proxy.writePorts({
    ...mulchPort(kept, { '*': [echoA.port], '127.0.0.21': [echoB.port] }),
    ...mulchPort(changed, { '127.0.0.22': [echoB.port] }),
    ...mulchPort(added, { '*': [echoB.port] })
  })
  await reloadPorts(proxy)
  await proxy.waitForLog((l) => l.msg === 'tcp forward port open' && l.listen === `127.0.0.1:${added}`, 5000)
  t.ok((await removedEnd) !== undefined, 'the removed port\'s connection ended')
  t.ok((await changedEnd) !== undefined, 'a connection whose forward now goes elsewhere ended')
  const onAdded = await connectFrom(added)
  t.teardown(() => onAdded.destroy())
  t.equal(await echoOnce(onAdded, 'new'), 'new', 'the added port forwards')
  t.ok(await refusedOrClosed(removed), 'the removed port no longer forwards')
  const onChanged2 = await connectFrom(changed, '127.0.0.22')
  t.teardown(() => onChanged2.destroy())
  t.equal(await echoOnce(onChanged2, 'moved'), 'moved')
  t.equal(echoB.sockets.size >= 2, true, 'the changed forward now reaches the new VM')
  await new Promise((resolve) => setTimeout(resolve, 100))
  stop = true
  await traffic
  t.ok(rounds > 3, `traffic flowed during the reload (${rounds} round trips)`)
  t.equal(await echoOnce(onKept, 'after'), 'after', 'the kept public connection survived')
  t.equal(await echoOnce(onKeptVm, 'after'), 'after', 'the kept per-VM connection survived')
  const m = await proxy.metrics()
  t.equal(metricValue(m, `vmfront_tcp_connections{port="${kept}"}`), 2)
  t.equal(metricValue(m, `vmfront_tcp_connections{port="${removed}"}`), undefined, 'a removed port leaves the gauge')
})

t.test('a port that cannot be bound is reported; the others still apply; a later reload retries it', async (t) => {
  const echo = await startEcho(t)
  const busy = net.createServer()
  const busyPort = await freePort()
  await new Promise<void>((resolve) => { busy.listen(busyPort, '127.0.0.1', resolve) })
  t.teardown(() => busy.close())
  const ok = await freePort()
  const proxy = await startTcpProxy(t, { ...mulchPort(busyPort, { '*': [echo.port] }), ...mulchPort(ok, { '*': [echo.port] }) })
  const failure = await proxy.waitForLog((l) => String(l.msg).startsWith('tcp forward port cannot be bound'), 5000)
  t.equal(failure.listen, `127.0.0.1:${busyPort}`)
  t.equal(failure.reason, 'address already in use')
  const s = await connectFrom(ok)
  t.teardown(() => s.destroy())
  t.equal(await echoOnce(s, 'ok'), 'ok', 'the other port serves')
  t.equal(metricValue(await proxy.metrics(), `vmfront_tcp_listener_up{port="${busyPort}"}`), 0)
  const status = await (await fetch(`http://127.0.0.1:${proxy.ports.admin}/status`)).json() as { tcp_ports: Array<Record<string, unknown>> }
  t.match(status.tcp_ports.find((p) => p.listen === `127.0.0.1:${busyPort}`), { listening: false, error: 'address already in use', connections: 0 }, '/status names the failure')
  t.match(status.tcp_ports.find((p) => p.listen === `127.0.0.1:${ok}`), { listening: true, connections: 1, forwards: [{ allow: [], target: `127.0.0.1:${echo.port}`, proxy_protocol: 0 }] })
  await new Promise<void>((resolve) => { busy.close(() => { resolve() }) })
  await reloadPorts(proxy)
  await proxy.waitForLog((l) => l.msg === 'tcp forward port open' && l.listen === `127.0.0.1:${busyPort}`, 5000)
  t.equal(metricValue(await proxy.metrics(), `vmfront_tcp_listener_up{port="${busyPort}"}`), 1)
  const s2 = await connectFrom(busyPort)
  t.teardown(() => s2.destroy())
  t.equal(await echoOnce(s2, 'now'), 'now')
  t.equal(await echoOnce(s, 'still'), 'still', 'the other port\'s connection was kept')
})

t.test('a bad port file keeps every running forward', async (t) => {
  const echo = await startEcho(t)
  const a = await freePort()
  const proxy = await startTcpProxy(t, mulchPort(a, { '*': [echo.port] }))
  const s = await connectFrom(a)
  t.teardown(() => s.destroy())
  proxy.writePorts('{"1": {"ListenAddr": ')
  const from = proxy.logs.length
  proxy.child.kill('SIGHUP')
  const failed = await proxy.waitForLog((l) => String(l.msg).startsWith('port file reload failed'), 5000, from)
  t.equal(failed.file, proxy.portsFile)
  t.match(String(failed.problem), /^is not valid JSON/)
  t.equal(await echoOnce(s, 'kept'), 'kept')
  const s2 = await connectFrom(a)
  t.teardown(() => s2.destroy())
  t.equal(await echoOnce(s2, 'still listening'), 'still listening')
})

t.test('SIGTERM drains open TCP connections, then exits', async (t) => {
  const echo = await startEcho(t)
  const a = await freePort()
  const proxy = await startTcpProxy(t, mulchPort(a, { '*': [echo.port] }), { tcpIdle: '1h' })
  const s = await connectFrom(a)
  t.teardown(() => s.destroy())
  t.equal(await echoOnce(s, 'hi'), 'hi')
  const from = proxy.logs.length
  proxy.child.kill('SIGTERM')
  await proxy.waitForLog((l) => l.msg === 'shutting down: draining', 5000, from)
  t.ok(await refusedOrClosed(a), 'no new connection while draining')
  t.equal(await echoOnce(s, 'during drain'), 'during drain', 'an open connection keeps working while draining')
  s.end()
  await readToEnd(s)
  const code = await proxy.exited
  t.equal(code, 0, 'exits once the connection has ended, before timeouts.drain (5s)')
})

t.test('route file ports reload on SIGHUP; a listen address in both files keeps everything', async (t) => {
  const echo = await startEcho(t)
  const [fromPortsFile, fromRoutes] = [await freePort(), await freePort()]
  const proxy = await startTcpProxy(t, mulchPort(fromPortsFile, { '*': [echo.port] }))
  const s = await connectFrom(fromPortsFile)
  t.teardown(() => s.destroy())
  t.equal(await echoOnce(s, 'a'), 'a')
  proxy.writeRoutes({ version: 1, routes: [], ports: [{ listen: `127.0.0.1:${fromRoutes}`, target: `127.0.0.1:${echo.port}` }] })
  await reloadPorts(proxy)
  await proxy.waitForLog((l) => l.msg === 'tcp forward port open' && l.listen === `127.0.0.1:${fromRoutes}`, 5000)
  const r = await connectFrom(fromRoutes)
  t.teardown(() => r.destroy())
  t.equal(await echoOnce(r, 'b'), 'b', 'the route file\'s forward serves')
  // Both files on one address: the whole port set stays as it was.
  proxy.writeRoutes({ version: 1, routes: [], ports: [{ listen: `127.0.0.1:${fromPortsFile}`, target: `127.0.0.1:${echo.port}` }] })
  const from = proxy.logs.length
  proxy.child.kill('SIGHUP')
  const conflict = await proxy.waitForLog((l) => String(l.msg).startsWith('tcp forwards conflict'), 5000, from)
  t.equal(conflict.path, 'routes_file $.ports[0]')
  t.match(String(conflict.problem), new RegExp(`listens on 127\\.0\\.0\\.1:${fromPortsFile} like ports_file`))
  t.equal(await echoOnce(s, 'c'), 'c', 'the port file\'s connection goes on')
  t.equal(await echoOnce(r, 'd'), 'd', 'the route file\'s earlier forward is kept too')
})
