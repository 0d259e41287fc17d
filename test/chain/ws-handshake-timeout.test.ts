// A WebSocket to a chained domain whose child accepts TCP and never answers: the
// handshake is bounded by timeouts.upstream_response (504), like a plain request,
// and the parent lets go of its connections to the silent child.
import t from 'tap'
import net from 'node:net'
import { api, startParent, until } from './chain-helpers.ts'
import { webSocketHandshake } from '../adversarial/chain-attacks.ts'

t.test('a silent child gets the WebSocket handshake a 504 at upstream_response', async (t) => {
  const held = new Set<net.Socket>()
  // Upgrade connections (not the pool's HTTP/2 probes, which come and go by design).
  const upgrades = new Set<net.Socket>()
  const silent = net.createServer((socket) => {
    held.add(socket)
    socket.on('error', () => {})
    socket.once('data', (c: Buffer) => { if (c.toString('latin1').startsWith('GET /ws')) upgrades.add(socket) })
    socket.on('close', () => { held.delete(socket); upgrades.delete(socket) })
  })
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => { for (const s of held) s.destroy(); silent.close(() => { resolve() }) }))
  const silentPort = (silent.address() as net.AddressInfo).port

  const parent = await startParent(t, { toml: '[timeouts]\nupstream_response = "1s"\n' })
  const registered = await api(parent.api, 'register', { name: 'silent', child_url: `http://127.0.0.1:${silentPort}`, domains: [{ domain: 'ws.example.com' }] })
  t.equal(registered.status, 200)

  const start = performance.now()
  const head = await webSocketHandshake(parent.ports.http, 'ws.example.com', { timeoutMs: 10_000 })
  const ms = performance.now() - start
  t.match(head, /^HTTP\/1\.1 504/, 'the client gets 504')
  // connect_timeout (500 ms here) for the ticket's session, then 1 s for the answer.
  t.ok(ms < 3500, `answered in ${Math.round(ms)} ms (upstream_response = 1 s)`)
  const access = await parent.waitForLog((l) => l.msg === 'access' && l.domain === 'ws.example.com')
  t.equal(access.status, 504, 'logged as 504')
  t.ok(upgrades.size <= 1)
  t.equal(await until('the parent to let go of the upgrade connection', () => (upgrades.size === 0 ? 0 : undefined), 3000), 0, 'no upgrade connection to the child left open')
})
