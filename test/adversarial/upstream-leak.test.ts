// Issue 9 point 1: no client behaviour leaves a proxy→VM connection held after the
// client is gone, the VM keeps answering others, and a request waiting for a pool
// slot gets its 504 at upstream_response from dispatch. Small numbers (4 connections
// per target) so a few sockets show it; runUpstreamAttack runs the full-scale version.
import t from 'tap'
import net from 'node:net'
import http from 'node:http'
import { startProxyProcess, routesDoc } from '../helpers/proxy-process.ts'
import { pollUntil } from '../helpers/pebble.ts'
import { runUpstreamAttack, startBigVm, upstreamSockets, normalGet, UPSTREAM_ATTACK_KINDS } from './upstream-attacks.ts'

const MAX = 4
const RESPONSE_MS = 1000
const IDLE_MS = 2000

t.test('upstream connections end with their clients, whatever the clients do', async (t) => {
  const vm = await startBigVm()
  t.teardown(vm.close)
  // The proxy's connections to the VM, counted by ss each time the VM accepts one.
  // (The VM's own count lags: it still counts sockets the proxy closed whose EOF it
  // has not read yet.)
  let peak = 0
  vm.server.on('connection', () => { peak = Math.max(peak, upstreamSockets(vm.port).established) })
  // A second VM that never answers, for the slot-queue deadline.
  const silent = http.createServer(() => {})
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => { silent.closeAllConnections(); silent.close(() => { resolve() }) }))

  const proxy = await startProxyProcess(t, {
    routes: routesDoc([
      { domain: 'vm.test', target: `http://127.0.0.1:${vm.port}` },
      { domain: 'silent.test', target: `http://127.0.0.1:${(silent.address() as net.AddressInfo).port}` }
    ]),
    listen: '[listen]\nhttp = "127.0.0.1:0"\nhttps = "127.0.0.1:0"\nadmin = "127.0.0.1:0"',
    // One worker: max_connections_per_target bounds each worker's pool, and this counts one pool.
    toml: `[server]\nworkers = 1\n[timeouts]\nupstream_response = "${RESPONSE_MS}ms"\nupstream_idle = "${IDLE_MS}ms"\n[upstream]\nmax_connections_per_target = ${MAX}\n`
  })
  const port = proxy.ports.http

  for (const kind of UPSTREAM_ATTACK_KINDS) {
    await t.test(kind, async (t) => {
      const attack = runUpstreamAttack({ port, tlsPort: proxy.ports.https, host: 'vm.test', path: '/big', kind, connections: 8, pipeline: 3, holdMs: 800, readBytes: 32, readIntervalMs: 200 })
      const during = await normalGet(port, 'vm.test', '/', 5000)
      t.ok(during.status === 200 || during.status === 504, `a normal client is answered during the attack (${during.status})`)
      t.ok(during.ms < RESPONSE_MS + 1000, `within upstream_response (${Math.round(during.ms)} ms)`)
      await attack

      let last = upstreamSockets(vm.port)
      await pollUntil(() => {
        last = upstreamSockets(vm.port)
        return last.withUnread === 0 && last.established <= MAX
      }, 3000, `no proxy→VM connection with unread data (last: ${JSON.stringify(last)})`).catch(() => {})
      t.equal(last.withUnread, 0, `no proxy→VM connection holds unread data (${last.unreadBytes} bytes)`)
      t.ok(last.established <= MAX, `at most the idle pool stays open (${last.established})`)

      const after = await normalGet(port, 'vm.test', '/', 3000)
      t.equal(after.status, 200, 'a normal client is answered after the attack')
    })
  }

  await t.test('pipelined requests go to the VM one at a time, when their turn comes', async (t) => {
    const socket = net.connect(port, '127.0.0.1')
    socket.on('error', () => {})
    t.teardown(() => { socket.destroy() })
    const before = vm.requests()
    // 1 GiB: kernel buffers (several MiB on loopback) could absorb all of a 4 MiB answer
    // for a client that reads nothing, and the next request's turn would come.
    socket.write('GET /huge HTTP/1.1\r\nHost: vm.test\r\n\r\n'.repeat(3))
    socket.pause()
    await pollUntil(() => vm.requests() > before, 3000, 'the first pipelined request at the VM')
    // A later request from another client: answered means the proxy has long seen the pipelined ones.
    t.equal((await normalGet(port, 'vm.test', '/', 3000)).status, 200)
    t.equal(vm.requests() - before, 2, 'only the first pipelined request (and the other client) reached the VM')
    socket.resetAndDestroy()
  })

  await t.test('a request waiting for a pool slot gets its 504 at upstream_response from dispatch', async (t) => {
    const results = await Promise.all(Array.from({ length: MAX + 3 }, async () => await normalGet(port, 'silent.test', '/', 5000)))
    for (const r of results) {
      t.equal(r.status, 504)
      // Before: the queued ones waited for a connection first (up to twice as long).
      t.ok(r.ms < RESPONSE_MS + 600, `answered in ${Math.round(r.ms)} ms`)
    }
  })

  await t.test('a client that stops reading is cut after upstream_idle, and so is its VM connection', async (t) => {
    const socket = net.connect(port, '127.0.0.1')
    socket.on('error', () => {})
    t.teardown(() => { socket.destroy() })
    // A path of its own: the pipelined test above logs a /huge too, maybe late.
    socket.write('GET /huge?stalled HTTP/1.1\r\nHost: vm.test\r\n\r\n')
    socket.pause()
    // The paused client cannot see its connection close; the access log and ss can.
    const line = await proxy.waitForLog((l) => l.msg === 'access' && l.path === '/huge?stalled', IDLE_MS + 3000)
    t.equal(line.status, 499, 'recorded as the client\'s doing')
    const ms = line.duration_ms as number
    t.ok(ms >= IDLE_MS - 50 && ms < IDLE_MS + 1000, `cut after ${Math.round(ms)} ms`)
    let last = upstreamSockets(vm.port)
    await pollUntil(() => { last = upstreamSockets(vm.port); return last.withUnread === 0 }, 2000, 'the stalled response to release its VM connection').catch(() => {})
    t.equal(last.withUnread, 0, 'its VM connection was released while the client is still connected')
  })

  t.ok(peak <= MAX, `the proxy never held more than max_connections_per_target connections to the VM (peak ${peak})`)
})
