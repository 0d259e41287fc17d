// SIGTERM on a chain child whose parent keeps an idle HTTP/2 session open: the
// child sends GOAWAY, closes idle sessions at once and exits in well under its
// drain timeout (10 s here), every time. Also with a peer that never closes its
// side of the connection, and with one that opens its session during the drain.
import t from 'tap'
import net from 'node:net'
import { routesDoc } from '../helpers/proxy-process.ts'
import { startBackend } from '../helpers/backend.ts'
import { get, startChild, startParent, chainStatus, until } from './chain-helpers.ts'

const RUNS = 4
const DRAIN = '[timeouts]\ndrain = "10s"\n'

t.test('a child with an idle session from its parent exits at once on SIGTERM', async (t) => {
  const vm = await startBackend(t)
  const parent = await startParent(t, { chain: { ping_interval: '5s', ping_timeout: '2s' } })
  const times: number[] = []
  for (let run = 0; run < RUNS; run++) {
    const child = await startChild(t, { apiPort: parent.apiPort, name: 'idle', routes: routesDoc([{ domain: 'idle.example.com', target: vm.origin }]), toml: DRAIN })
    await until('the chained domain', async () => ((await get(parent.ports.http, 'idle.example.com')).status === 200 || undefined))
    await until('the parent session idle', async () => {
      const c = (await chainStatus(parent)).children.find((x: any) => x.name === 'idle')
      return c?.session.connected === true && c.session.streams === 0 ? true : undefined
    })
    const start = performance.now()
    const code = await child.stop('SIGTERM')
    const ms = performance.now() - start
    times.push(Math.round(ms))
    t.equal(code, 0, `run ${run}: exit 0`)
  }
  t.ok(Math.max(...times) < 2000, `exit times over ${RUNS} runs: ${times.join(', ')} ms (drain = 10 s)`)
})

/** Opens a raw h2c connection: preface + SETTINGS, then reads and never closes its side. */
function stubbornPeer (port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true }, () => {
      // Client preface, then an empty SETTINGS frame.
      socket.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]))
      socket.once('data', () => { resolve(socket) })
    })
    socket.on('data', () => {})
    socket.on('error', reject)
  })
}

t.test('a peer that never closes its side does not hold the exit', async (t) => {
  const vm = await startBackend(t)
  const parent = await startParent(t)
  const child = await startChild(t, { apiPort: parent.apiPort, name: 'stubborn', routes: routesDoc([{ domain: 's.example.com', target: vm.origin }]), toml: DRAIN })
  const peer = await stubbornPeer(child.port)
  t.teardown(() => { peer.destroy() })
  const start = performance.now()
  t.equal(await child.stop('SIGTERM'), 0)
  const ms = performance.now() - start
  t.ok(ms < 2000, `exited in ${Math.round(ms)} ms with a half-open idle HTTP/2 session`)
})

t.test('a peer whose HTTP/2 session starts during the drain does not hold the exit', async (t) => {
  const vm = await startBackend(t)
  const parent = await startParent(t)
  const child = await startChild(t, { apiPort: parent.apiPort, name: 'late', routes: routesDoc([{ domain: 'l.example.com', target: vm.origin }]), toml: DRAIN })
  await parent.waitForLog((l) => l.msg === 'chain child registered' && l.child === 'late')
  // Connected before SIGTERM, silent until the child has sent its GOAWAYs.
  const socket = await new Promise<net.Socket>((resolve) => { const s = net.connect(child.port, '127.0.0.1', () => { resolve(s) }) })
  socket.on('error', () => {})
  socket.on('data', () => {})
  t.teardown(() => { socket.destroy() })
  const from = child.logs.length
  const start = performance.now()
  const exited = child.stop('SIGTERM')
  await child.waitForLog((l) => l.msg === 'chain deregistered from parent', 5000, from)
  socket.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]))
  t.equal(await exited, 0)
  const ms = performance.now() - start
  t.ok(ms < 2000, `exited in ${Math.round(ms)} ms`)
})

t.test('a parent that never answers the deregistration holds the exit 2 s at most', async (t) => {
  const hung = new Set<import('node:http').ServerResponse>()
  const { createServer } = await import('node:http')
  // A parent API that takes registrations and never answers a deregistration.
  const api = createServer((req, res) => {
    let text = ''
    req.on('data', (c: Buffer) => { text += c.toString() })
    req.on('end', () => {
      if (req.url === '/chain/v1/deregister') { hung.add(res); return }
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({ lease_ttl_seconds: 60, domains: JSON.parse(text).domains }))
    })
  })
  await new Promise<void>((resolve) => api.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => { api.closeAllConnections(); api.close(() => { resolve() }) }))
  const vm = await startBackend(t)
  // connect_timeout 5 s: each call to the parent may take 10 s.
  const child = await startChild(t, { apiPort: (api.address() as net.AddressInfo).port, name: 'hung', routes: routesDoc([{ domain: 'h.example.com', target: vm.origin }]), toml: DRAIN, chain: { connect_timeout: '5s' } })
  await child.waitForLog((l) => l.msg === 'chain registered with parent', 5000)
  const start = performance.now()
  t.equal(await child.stop('SIGTERM'), 0)
  const ms = performance.now() - start
  t.ok(ms < 3500, `exited in ${Math.round(ms)} ms`)
  t.equal(hung.size, 1, 'it did try to deregister')
})
