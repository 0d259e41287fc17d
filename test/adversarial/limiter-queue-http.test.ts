/**
 * Through a real proxy process (issue 9, point 7): one client IP opens 101
 * connections to a route whose profile allows one request in flight and a 30 s
 * overflow wait. One request reaches the VM, 64 wait, and the other 36 get a 429 at
 * once instead of waiting 30 s; when the client leaves, nothing stays held and the
 * next request is served.
 */
import t from 'tap'
import net from 'node:net'
import { startBackend } from '../helpers/backend.ts'
import { pollUntil } from '../helpers/pebble.ts'
import { metricValue, routesDoc, startProxyProcess } from '../helpers/proxy-process.ts'

const QUEUE_CAP = 64
const EXTRA = 100

/** Sends one GET on a fresh connection; `status` resolves with the status code when an answer comes. */
function openRequest (port: number, path: string): { socket: net.Socket, status: Promise<number> } {
  const socket = net.connect(port, '127.0.0.1')
  socket.on('error', () => {})
  socket.write(`GET ${path} HTTP/1.1\r\nHost: queue.test\r\n\r\n`)
  const status = new Promise<number>((resolve) => {
    let head = ''
    socket.on('data', (c: Buffer) => {
      head += c.toString('latin1')
      if (head.length >= 12) resolve(Number(head.slice(9, 12)))
    })
  })
  return { socket, status }
}

t.test(`one IP: ${QUEUE_CAP} requests wait for the slot, the rest get 429 at once`, async (t) => {
  const held: Array<() => void> = []
  let reached = 0
  const vm = await startBackend(t, (req, res) => {
    reached++
    if (req.url === '/hold') {
      held.push(() => { res.end('held') })
      return
    }
    res.end('ok')
  })
  const proxy = await startProxyProcess(t, {
    routes: routesDoc([{ domain: 'queue.test', target: vm.origin, rate_profile: 'single' }]),
    toml: '[[rate_profile]]\nname = "single"\nconcurrent_max_requests = 1\nconcurrent_overflow_timeout = "30s"\n'
  })
  const port = proxy.ports.http
  const sockets: net.Socket[] = []
  t.teardown(() => { for (const s of sockets) s.destroy() })

  const first = openRequest(port, '/hold')
  sockets.push(first.socket)
  await pollUntil(() => held.length === 1, 5000, 'the first request to hold the slot')

  const statuses: number[] = []
  const started = Date.now()
  for (let i = 0; i < EXTRA; i++) {
    const r = openRequest(port, '/hold')
    sockets.push(r.socket)
    void r.status.then((s) => { statuses.push(s) })
  }
  await pollUntil(() => statuses.length >= EXTRA - QUEUE_CAP, 8000, `${EXTRA - QUEUE_CAP} immediate answers`)
  const elapsed = Date.now() - started
  t.ok(elapsed < 8000, `answered in ${elapsed} ms, not after the 30 s overflow wait`)
  t.same([...new Set(statuses)], [429], 'the answers are 429s')
  const metrics = await proxy.metrics()
  t.equal(metricValue(metrics, 'vmfront_rate_limited_total{profile="single"}'), EXTRA - QUEUE_CAP, 'each counted')
  t.equal(reached, 1, 'the VM saw only the request holding the slot')

  // The oldest waiting request takes the slot when it frees.
  held.shift()?.()
  await pollUntil(() => held.length === 1, 5000, 'the next waiting request to reach the VM')
  t.equal(statuses.length, EXTRA - QUEUE_CAP, 'the waiting ones still wait (one now at the VM)')

  // The client leaves: every waiting request and the slot are freed.
  for (const s of sockets) s.destroy()
  held.length = 0
  const after = openRequest(port, '/')
  sockets.push(after.socket)
  t.equal(await after.status, 200, 'a new request is served at once')
})
