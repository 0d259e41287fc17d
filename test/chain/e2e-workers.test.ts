// A chain parent and a chain child each with 2 workers (SPEC §12: "one chain API, one
// registration of a child with its parent"), as real processes: the child registers
// once, both parent workers forward its domains over their own HTTP/2 sessions,
// /metrics sums their figures and /status tells whose they are; a WebSocket ticket
// issued by one child worker is taken by another, once.
import t from 'tap'
import http from 'node:http'
import http2 from 'node:http2'
import net from 'node:net'
import { Agent, request } from 'undici'
import { metricValue, routesDoc, type ProxyProcess } from '../helpers/proxy-process.ts'
import { deadPort, startBackend } from '../helpers/backend.ts'
import { trackUpgrades } from '../adversarial/chain-attacks.ts'
import { createChainAuth, CHAIN_CHALLENGE_PATH, CHAIN_SESSION_PATH, CHAIN_TICKET_PATH } from '../../proxy/chain/auth.ts'
import { chainStatus, PSK, startChild, startParent, startRelay, until } from './chain-helpers.ts'

interface Teardown { teardown (fn: () => unknown): void }


interface WorkerStatus { pid: number, role: string, requests?: number }

async function statusOf (proxy: ProxyProcess): Promise<{ workers: WorkerStatus[], chain: any }> {
  const res = await request(`http://127.0.0.1:${proxy.ports.admin}/status`)
  return await res.body.json() as { workers: WorkerStatus[], chain: any }
}

/**
 * A WebSocket handshake, then a close frame: the VM (the echo backend) ends the
 * tunnel, so each proxy on the way logs the exchange (with its worker's slot).
 * Resolves with the handshake's response head once the connection has closed.
 */
function webSocketExchange (port: number, host: string, options: { localAddress?: string, headers?: Record<string, string> } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }) })
    const timer = setTimeout(() => { socket.destroy(); reject(new Error('websocket exchange timed out')) }, 5000)
    let buf = ''
    let head: string | undefined
    const extra = Object.entries(options.headers ?? {}).map(([k, v]) => `${k}: ${v}\r\n`).join('')
    socket.setEncoding('latin1')
    socket.on('error', (err) => { clearTimeout(timer); reject(err) })
    socket.on('data', (c: string) => {
      if (head !== undefined) return
      buf += c
      const end = buf.indexOf('\r\n\r\n')
      if (end === -1) return
      head = buf.slice(0, end)
      // A masked close frame with no payload.
      socket.write(Buffer.from([0x88, 0x80, 1, 2, 3, 4]))
    })
    socket.on('close', () => {
      clearTimeout(timer)
      if (head === undefined) reject(new Error('closed before the handshake answer'))
      else resolve(head)
    })
    socket.write(`GET /ws HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`)
  })
}

/** An HTTP relay in front of the parent's chain API that counts what it forwards, by path. */
async function countingApi (t: Teardown, apiPort: number): Promise<{ port: number, calls: Map<string, number> }> {
  const calls = new Map<string, number>()
  const server = http.createServer((req, res) => {
    calls.set(req.url ?? '', (calls.get(req.url ?? '') ?? 0) + 1)
    const upstream = http.request({ host: '127.0.0.1', port: apiPort, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers)
      answer.pipe(res)
    })
    upstream.on('error', () => { res.destroy() })
    req.pipe(upstream)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => { resolve() }) }))
  return { port: (server.address() as import('node:net').AddressInfo).port, calls }
}

t.test('parent and child with 2 workers each: one registration, both parent workers forward, sums and status', async (t) => {
  const vm = await startBackend(t)
  const upgrades = trackUpgrades(t, vm.server)
  // A long lease: the child's renewals (every lease/3) stay out of the count below.
  const parent = await startParent(t, { workers: 2, chain: { lease_ttl: '60s' } })
  const api = await countingApi(t, parent.apiPort)
  const childPort = await deadPort()
  // The parent reaches the child through a relay that can freeze (PING timeouts below).
  const relay = await startRelay(t, childPort)
  const child = await startChild(t, {
    apiPort: api.port,
    port: childPort,
    childUrl: `http://127.0.0.1:${relay.port}`,
    name: 'c1',
    routes: routesDoc([{ domain: 'app.example.com', target: vm.origin }]),
    workers: 2
  })
  await parent.waitForLog((l) => l.msg === 'chain child registered' && l.child === 'c1')
  const parentWorkers = (await statusOf(parent)).workers.filter((w) => w.role.startsWith('worker'))
  const childWorkers = (await statusOf(child)).workers.filter((w) => w.role.startsWith('worker'))
  t.equal(parentWorkers.length, 2, 'the parent runs 2 workers')
  t.equal(childWorkers.length, 2, 'the child runs 2 workers')

  // New connections, so the parent's two workers both take some (one accept queue).
  const fromClient = new Agent({ localAddress: '127.0.0.2', pipelining: 0 })
  t.teardown(() => fromClient.close())
  const N = 60
  const statuses: number[] = []
  for (let batch = 0; batch < N / 10; batch++) {
    statuses.push(...await Promise.all(Array.from({ length: 10 }, async (_, i) => {
      const res = await request(`http://127.0.0.1:${parent.ports.http}/r${batch * 10 + i}`, { dispatcher: fromClient, headers: { host: 'app.example.com', connection: 'close' }, reset: true })
      const seen = JSON.parse(await res.body.text()) as { headers: Record<string, string> }
      t.equal(seen.headers['x-real-ip'], '127.0.0.2', 'the child believed the parent: the VM sees the client')
      return res.statusCode
    })))
  }
  t.same(statuses.filter((s) => s !== 200), [], `${N} requests for the chained domain answered 200`)

  await t.test('every parent worker served the chained domain, over its own sessions', async (t) => {
    const served = (await statusOf(parent)).workers.filter((w) => w.role.startsWith('worker'))
    t.equal(served.length, 2)
    t.ok(served.every((w) => (w.requests ?? 0) > 0), `requests per parent worker: ${served.map((w) => w.requests).join(', ')}`)
    const metrics = await parent.metrics()
    // Summed over the codes: a client that closes right after the body may be logged 499 (Connection: close).
    const counted = metrics.split('\n').filter((l) => l.startsWith('vmfront_http_requests_total{domain="app.example.com"')).reduce((n, l) => n + Number(l.split(' ').at(-1)), 0)
    t.equal(counted, N, '/metrics sums the workers')
    t.equal(served.reduce((n, w) => n + (w.requests ?? 0), 0), N, 'as /status counts them per worker')
    t.equal(metricValue(metrics, 'vmfront_chain_children'), 1, 'one child, counted once (not per worker)')
    const session = (await chainStatus(parent)).children[0].session
    t.equal(session.workers.length, 2, '/status lists the sessions of each worker')
    t.ok(session.workers.every((w: any) => w.connected === true && w.sessions >= 1), 'each parent worker holds a session of its own')
    t.equal(session.sessions, session.workers[0].sessions + session.workers[1].sessions, 'and sums them')
    t.equal(session.connected, true)
  })

  await t.test('the child registered once (its primary), not once per worker', async (t) => {
    t.equal(api.calls.get('/chain/v1/register'), 1, 'one registration request reached the parent')
    t.equal(parent.logs.filter((l) => l.msg === 'chain child registered').length, 1)
    const c = await chainStatus(child)
    t.equal(c.registered, true)
    t.equal(c.workers.length, 2, 'the child\'s /status lists its workers\' parent sessions')
    t.equal(c.h2_sessions, c.workers[0].h2_sessions + c.workers[1].h2_sessions, 'summed')
    t.ok(c.parent_sessions >= 2, `the parent's workers authenticated their sessions (${c.parent_sessions})`)
  })

  await t.test('WebSockets through parent → child keep the client, whichever workers take them', async (t) => {
    const from = upgrades.length
    for (let i = 0; i < 12; i++) {
      const head = await webSocketExchange(parent.ports.http, 'app.example.com', { localAddress: '127.0.0.2' })
      t.match(head, /^HTTP\/1\.1 101/)
      t.match(head, /X-Seen-Real-IP: 127\.0\.0\.2\r?$/im, `WebSocket ${i}: the child took the parent's ticket`)
    }
    t.equal(upgrades.length - from, 12)
    const childAccess = await until('the child\'s access lines', () => {
      const lines = child.logs.filter((l) => l.msg === 'access' && l.status === 101)
      return lines.length >= 12 ? lines : undefined
    })
    t.ok(childAccess.every((l) => typeof l.worker === 'number'), 'child workers log their slot')
    t.equal(metricValue(await child.metrics(), 'vmfront_chain_auth_failures_total'), 0, 'no ticket was refused')
  })

  await t.test('session resets are counted by the worker whose session it was, and summed', async (t) => {
    relay.freeze()
    await until('every parent worker\'s session reset', async () => {
      const s = (await chainStatus(parent)).children[0].session
      return s.workers.every((w: any) => w.resets >= 1) ? true : undefined
    })
    relay.thaw()
    const s = (await chainStatus(parent)).children[0].session
    t.equal(s.resets, s.workers[0].resets + s.workers[1].resets, '/status sums the resets')
    t.equal(metricValue(await parent.metrics(), 'vmfront_chain_session_resets_total{child="c1"}'), s.resets, '/metrics sums the same counts')
    await until('the chained domain served again', async () => {
      const res = await request(`http://127.0.0.1:${parent.ports.http}/`, { headers: { host: 'app.example.com' } })
      await res.body.text()
      return res.statusCode === 200 ? true : undefined
    })
  })

  await t.test('chain forget (admin) drops the child from every worker before it answers', async (t) => {
    const res = await request(`http://127.0.0.1:${parent.ports.admin}/chain/forget`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ child: 'c1' }) })
    t.equal(res.statusCode, 200)
    await res.body.text()
    const after = await Promise.all(Array.from({ length: 10 }, async () => {
      const r = await request(`http://127.0.0.1:${parent.ports.http}/`, { headers: { host: 'app.example.com', connection: 'close' }, reset: true })
      await r.body.text()
      return r.statusCode
    }))
    t.same(after, Array(10).fill(404), 'no worker serves the forgotten child\'s domain')
  })

  await t.test('the child deregisters once on SIGTERM', async (t) => {
    t.equal(await child.stop('SIGTERM'), 0)
    t.equal(api.calls.get('/chain/v1/deregister'), 1)
  })
})

/** The parent's side of the session proof, by hand, on one h2c session to the child. */
async function provenSession (t: Teardown, port: number): Promise<{ ticket: () => Promise<string> }> {
  const origin = `http://127.0.0.1:${port}`
  const session = http2.connect(origin)
  t.teardown(() => { session.destroy() })
  const call = (method: string, path: string, value?: string): Promise<{ status: number, value?: string }> => new Promise((resolve, reject) => {
    const stream = session.request({ ':method': method, ':path': path, ...(value === undefined ? {} : { 'x-vmfront-chain': value }) })
    stream.on('response', (headers) => {
      stream.resume()
      stream.on('end', () => { resolve({ status: Number(headers[':status']), value: headers['x-vmfront-chain'] as string | undefined }) })
    })
    stream.on('error', reject)
    stream.end()
  })
  const auth = createChainAuth(PSK)
  const nonce = (await call('GET', CHAIN_CHALLENGE_PATH)).value!
  const proof = await call('POST', CHAIN_SESSION_PATH, auth.sessionProof(origin, nonce))
  if (proof.status !== 204) throw new Error(`session proof refused: ${proof.status}`)
  const control = auth.controlKey(origin, nonce)
  return {
    async ticket () {
      const answer = await call('POST', CHAIN_TICKET_PATH, control)
      if (answer.status !== 200 || answer.value === undefined) throw new Error(`no ticket: ${answer.status}`)
      return answer.value
    }
  }
}

t.test('a WebSocket ticket issued by one child worker is taken by another, once', async (t) => {
  const vm = await startBackend(t)
  trackUpgrades(t, vm.server)
  // No parent: this test is the parent, on one HTTP/2 session.
  const child = await startChild(t, { apiPort: await deadPort(), name: 'solo', routes: routesDoc([{ domain: 'ws.example.com', target: vm.origin }]), workers: 2 })
  const proven = await provenSession(t, child.port)
  const status = await chainStatus(child)
  const issuer = (status.workers as Array<{ worker: number, parent_sessions: number }>).find((w) => w.parent_sessions === 1)
  t.ok(issuer !== undefined, 'one child worker holds the authenticated session: it issues every ticket')

  const upgradeWith = async (ticket: string): Promise<{ trusted: boolean, worker: number }> => {
    const from = child.logs.length
    const head = await webSocketExchange(child.port, 'ws.example.com', { headers: { 'x-vmfront-chain': ticket, 'x-forwarded-for': '203.0.113.7' } })
    const line = await child.waitForLog((l) => l.msg === 'access' && l.status === 101, 5000, from)
    t.match(head, /^HTTP\/1\.1 101/)
    return { trusted: /X-Seen-Real-IP: 203\.0\.113\.7\r?$/im.test(head), worker: line.worker as number }
  }

  // The upgrades come on new connections, which either worker may accept: go on
  // until some have landed on the worker that did not issue the ticket.
  let crossed = 0
  let tries = 0
  const spent: Array<{ ticket: string, worker: number }> = []
  while (crossed < 3 && tries < 60) {
    tries++
    const ticket = await proven.ticket()
    const used = await upgradeWith(ticket)
    t.ok(used.trusted, `ticket ${tries} believed by worker ${used.worker}`)
    if (used.worker !== issuer!.worker) crossed++
    spent.push({ ticket, worker: used.worker })
  }
  t.equal(crossed, 3, `tickets taken by the other worker than their issuer (${crossed} of ${tries})`)

  // A spent ticket is spent for every worker: replayed until both workers have refused it.
  const refusedOn = new Set<number>()
  let replays = 0
  while (refusedOn.size < 2 && replays < 40) {
    const { ticket, worker } = spent[replays % spent.length]
    replays++
    const again = await upgradeWith(ticket)
    t.notOk(again.trusted, `a spent ticket is refused (taken by worker ${worker}, replayed on worker ${again.worker})`)
    refusedOn.add(again.worker)
  }
  t.equal(refusedOn.size, 2, `replays refused by both workers (${replays} replays)`)
  t.equal(metricValue(await child.metrics(), 'vmfront_chain_auth_failures_total'), replays, 'each replay counted once, by the worker that refused it (summed)')
})
