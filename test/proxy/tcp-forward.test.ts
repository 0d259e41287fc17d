// TCP port forwarding (SPEC §11, issue 11 breakage 6): Mulch's port file and the
// route file's `ports` are read, and forwards serve real sockets on loopback: echo,
// allow/deny by source IP, half-close, idle timeout, metrics.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { ROOT, metricValue } from '../helpers/proxy-process.ts'
import { pollUntil } from '../helpers/pebble.ts'
import { connectFrom, echoOnce, freePort, mulchPort, readToEnd, startEcho, startTcpProxy, startTcpServer } from '../helpers/tcp-forward.ts'
import { parsePortFileText, parseRoutePorts, type PortProblem } from '../../proxy/port-table.ts'
import { parseRouteFileText } from '../../proxy/route-table.ts'
import { proxyHeaderV1, proxyHeaderV2 } from '../../proxy/tcp-forward.ts'

t.test('the port file mulchd writes parses with mulch-proxy semantics', async (t) => {
  const text = readFileSync(join(ROOT, 'test/fixtures/mulch-ports/mulch-proxy-ports-v2.db'), 'utf8')
  const parsed = parsePortFileText(text)
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.problems))
  t.same(parsed.specs.map((s) => ({ listen: s.listen, rules: s.rules })), [
    { listen: { host: '0.0.0.0', port: 2222 }, rules: [{ allow: [], target: { host: '10.104.0.12', port: 22 }, proxyProtocol: 0 }] },
    // PROXYProtoPort: connect to that port, with a v1 header naming Dest.Port
    { listen: { host: '0.0.0.0', port: 8443 }, rules: [{ allow: [], target: { host: '10.104.0.12', port: 8444 }, proxyProtocol: 1, headerPort: 443 }] },
    { listen: { host: '10.104.0.1', port: 9001 }, rules: [{ allow: ['10.104.0.13'], target: { host: '10.104.0.14', port: 3306 }, proxyProtocol: 0 }] }
  ])
})

t.test('a bad port file is refused with JSON paths, never "undefined"', async (t) => {
  const bad = parsePortFileText(JSON.stringify({
    22: { ListenAddr: { IP: '0.0.0.0', Port: 23, Zone: '' }, Forwards: { '*': { Dest: { IP: 'vm1', Port: 22, Zone: '' }, PROXYProtoPort: 0 } } },
    x: { ListenAddr: { IP: '0.0.0.0', Port: 1, Zone: '' }, Forwards: { nope: { Dest: { IP: '10.0.0.1', Port: 70000 }, PROXYProtoPort: -1 } } }
  }))
  t.notOk(bad.ok)
  const problems = (bad as { problems: PortProblem[] }).problems.map((p) => `${p.path}: ${p.message}`)
  t.ok(problems.some((p) => p.startsWith('$["22"].ListenAddr.Port: 23 does not match')), 'listen port vs key')
  t.ok(problems.some((p) => p.startsWith('$["22"].Forwards["*"].Dest.IP: "vm1" is not an IP address')), 'dest IP')
  t.ok(problems.some((p) => p.startsWith('$["x"]: is not a port number')), 'key')
  t.ok(problems.some((p) => p.startsWith('$["x"].Forwards["nope"]: must be keyed by a source IP')), 'source key')
  t.ok(problems.some((p) => p.startsWith('$["x"].Forwards["nope"].Dest.Port: must be a port number')), 'dest port')
  t.ok(problems.some((p) => p.startsWith('$["x"].Forwards["nope"].PROXYProtoPort: must be 0')), 'proxy port')
  t.notMatch(problems.join('\n'), /undefined/)
  const empty = parsePortFileText('')
  t.same(empty.ok ? [] : empty.problems, [{ path: '$', message: 'the file is empty' }], 'a file truncated by mulchd\'s in-place write is refused')
})

t.test('the route file v1 takes a ports array, validated with JSON paths', async (t) => {
  const ok = parseRouteFileText(JSON.stringify({ version: 1, routes: [], ports: [{ listen: '0.0.0.0:2222', target: '10.0.0.5:22', proxy_protocol: 2, allow: ['10.0.0.0/8'] }, { listen: ':2223', target: '[fd00::5]:22' }] }))
  if (!ok.ok) throw new Error(JSON.stringify(ok.errors))
  t.same(ok.table.ports, [
    { listen: { host: '0.0.0.0', port: 2222 }, rules: [{ allow: ['10.0.0.0/8'], target: { host: '10.0.0.5', port: 22 }, proxyProtocol: 2 }], from: 'routes_file $.ports[0]' },
    { listen: { host: '', port: 2223 }, rules: [{ allow: [], target: { host: 'fd00::5', port: 22 }, proxyProtocol: 0 }], from: 'routes_file $.ports[1]' }
  ])
  const bad = parseRouteFileText(JSON.stringify({ version: 1, routes: [], ports: [{ listen: '0.0.0.0:2222', target: 'vm:22', proxy_protocol: 3, allow: ['10.0.0.0/99'], extra: 1 }, { listen: '0.0.0.0:2222', target: '10.0.0.1:1' }, { listen: '0.0.0.0:2222', target: '10.0.0.1:1' }] }))
  t.notOk(bad.ok)
  const errors = bad.ok ? [] : bad.errors.map((e) => `${e.path}: ${e.message}`)
  t.ok(errors.includes('$.ports[0].extra: is not a known key (known: listen, target, proxy_protocol, allow)'), errors.join('\n'))
  t.ok(errors.some((e) => e.startsWith('$.ports[0].target: "vm:22" must name an IP address')))
  t.ok(errors.some((e) => e.startsWith('$.ports[0].proxy_protocol: must be 0 (none), 1 or 2')))
  t.ok(errors.some((e) => e.startsWith('$.ports[0].allow[0]: "10.0.0.0/99" has an invalid prefix length')))
  t.ok(errors.includes('$.ports[2].listen: "0.0.0.0:2222" is a duplicate of $.ports[1]: two entries on one address must each list their own sources in "allow"'))
  const errs: PortProblem[] = []
  parseRoutePorts({}, { add: (path, message) => errs.push({ path, message }) })
  t.same(errs, [{ path: '$.ports', message: 'must be an array, not a object' }])
})

t.test('PROXY headers: v1 text and v2 binary, IPv4 and IPv6', async (t) => {
  t.equal(proxyHeaderV1({ srcIp: '::ffff:10.0.0.9', srcPort: 5555, dstIp: '::ffff:10.0.0.1', dstPort: 443 }).toString(), 'PROXY TCP4 10.0.0.9 10.0.0.1 5555 443\r\n')
  t.equal(proxyHeaderV1({ srcIp: 'fd00::9', srcPort: 1, dstIp: 'fd00::1', dstPort: 2 }).toString(), 'PROXY TCP6 fd00::9 fd00::1 1 2\r\n')
  t.equal(proxyHeaderV2({ srcIp: '10.0.0.9', srcPort: 5555, dstIp: '10.0.0.1', dstPort: 443 }).toString('hex'),
    '0d0a0d0a000d0a515549540a' + '21' + '11' + '000c' + '0a000009' + '0a000001' + '15b3' + '01bb')
  const v6 = proxyHeaderV2({ srcIp: 'fd00::9', srcPort: 1, dstIp: '::1', dstPort: 2 })
  t.equal(v6.length, 16 + 36)
  t.equal(v6.subarray(12, 16).toString('hex'), '21210024')
  t.equal(v6.subarray(16, 32).toString('hex'), 'fd000000000000000000000000000009')
  t.equal(v6.subarray(32, 48).toString('hex'), '00000000000000000000000000000001')
})

t.test('a public forward echoes traffic and counts it', async (t) => {
  const echo = await startEcho(t)
  const listen = await freePort()
  const proxy = await startTcpProxy(t, mulchPort(listen, { '*': [echo.port] }))
  const s = await connectFrom(listen)
  t.teardown(() => s.destroy())
  t.equal(await echoOnce(s, 'SSH-2.0-OpenSSH_9.2\r\n'), 'SSH-2.0-OpenSSH_9.2\r\n')
  t.equal(await echoOnce(s, 'x'.repeat(100_000)), 'x'.repeat(100_000))
  const m = await proxy.metrics()
  t.equal(metricValue(m, `vmfront_tcp_connections{port="${listen}"}`), 1)
  t.equal(metricValue(m, `vmfront_tcp_connections_total{port="${listen}",result="forwarded"}`), 1)
  t.equal(metricValue(m, `vmfront_tcp_bytes_total{port="${listen}",direction="in"}`), 100_021)
  t.equal(metricValue(m, `vmfront_tcp_listener_up{port="${listen}"}`), 1)
  const lint = spawnSync('promtool', ['check', 'metrics'], { input: m, encoding: 'utf8' })
  t.equal(lint.stdout + lint.stderr, '', 'promtool check metrics reports nothing with TCP series present')
  s.end()
  await readToEnd(s)
  await pollUntil(async () => metricValue(await proxy.metrics(), `vmfront_tcp_connections{port="${listen}"}`) === 0, 3000, 'the gauge back to 0')
  t.equal(metricValue(await proxy.metrics(), `vmfront_tcp_bytes_total{port="${listen}",direction="out"}`), 100_021)
})

t.test('a per-source forward serves only that VM IP; others are refused and counted', async (t) => {
  const echo = await startEcho(t)
  const listen = await freePort()
  const proxy = await startTcpProxy(t, mulchPort(listen, { '127.0.0.13': [echo.port] }))
  const allowed = await connectFrom(listen, '127.0.0.13')
  t.teardown(() => allowed.destroy())
  t.equal(await echoOnce(allowed, 'hello'), 'hello')
  const denied = await connectFrom(listen, '127.0.0.14')
  denied.write('hello')
  const r = await readToEnd(denied)
  t.equal(r.data.length, 0, 'nothing reaches a source that is not listed')
  t.equal(echo.sockets.size, 1, 'the VM never saw the refused connection')
  t.equal(metricValue(await proxy.metrics(), `vmfront_tcp_connections_total{port="${listen}",result="refused"}`), 1)
})

t.test('route file ports: allow CIDRs, a VM that refuses counts as failed', async (t) => {
  const echo = await startEcho(t)
  const [a, b] = [await freePort(), await freePort()]
  const dead = await freePort()
  const proxy = await startTcpProxy(t, '{}', {
    routes: { version: 1, routes: [], ports: [{ listen: `127.0.0.1:${a}`, target: `127.0.0.1:${echo.port}`, allow: ['127.0.0.16/30'] }, { listen: `127.0.0.1:${b}`, target: `127.0.0.1:${dead}` }] }
  })
  const inside = await connectFrom(a, '127.0.0.17')
  t.teardown(() => inside.destroy())
  t.equal(await echoOnce(inside, 'in range'), 'in range')
  const outside = await connectFrom(a, '127.0.0.20')
  t.equal((await readToEnd(outside)).data.length, 0)
  for (let i = 0; i < 3; i++) {
    const failed = await connectFrom(b)
    t.equal((await readToEnd(failed)).data.length, 0, 'a VM that refuses: the client is closed')
  }
  const m = await proxy.metrics()
  t.equal(metricValue(m, `vmfront_tcp_connections_total{port="${a}",result="refused"}`), 1)
  t.equal(metricValue(m, `vmfront_tcp_connections_total{port="${b}",result="failed"}`), 3)
  const lines = proxy.logs.filter((l) => l.msg === 'tcp forward failed: the VM did not accept the connection')
  t.same(lines.map((l) => [l.target, l.reason]), [[`127.0.0.1:${dead}`, 'ECONNREFUSED']], 'one log line per target per 10 s, not one per connection')
})

t.test('half-close: the client\'s FIN reaches the VM and the reply still flows', async (t) => {
  // The VM answers only once it has read everything (like `wc -c` over ssh).
  const vm = await startTcpServer(t, (s) => {
    let n = 0
    s.on('data', (c: Buffer) => { n += c.length })
    s.on('end', () => { setTimeout(() => { s.end(`got ${n} bytes`) }, 50) })
  })
  const listen = await freePort()
  await startTcpProxy(t, mulchPort(listen, { '*': [vm.port] }))
  const s = await connectFrom(listen)
  s.end('y'.repeat(12345))
  const r = await readToEnd(s)
  t.equal(r.data.toString(), 'got 12345 bytes')
  t.ok(r.ended, 'the VM\'s FIN reaches the client too')
})

t.test('an idle connection ends after timeouts.tcp_idle; an active one does not', async (t) => {
  const echo = await startEcho(t)
  const listen = await freePort()
  await startTcpProxy(t, mulchPort(listen, { '*': [echo.port] }), { tcpIdle: '600ms' })
  const busy = await connectFrom(listen)
  const idle = await connectFrom(listen)
  t.teardown(() => { busy.destroy(); idle.destroy() })
  const start = Date.now()
  let idleClosedAt = 0
  const idleEnd = readToEnd(idle, 5000).then(() => { idleClosedAt = Date.now() })
  // busy talks every 200 ms for 1.2 s: twice the idle timeout
  for (let i = 0; i < 6; i++) {
    t.equal(await echoOnce(busy, `ping ${i}`), `ping ${i}`)
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  await idleEnd
  const took = idleClosedAt - start
  t.ok(took >= 500 && took < 2500, `the idle connection lasted ${took} ms`)
  t.equal(await echoOnce(busy, 'still here'), 'still here', 'the active connection outlived the idle one')
})
