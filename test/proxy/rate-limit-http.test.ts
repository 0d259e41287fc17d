/**
 * admitRequest (proxy/rate-limit.ts) in a real HTTP server on loopback: the slot is
 * held for the whole request and freed when the client disconnects mid-request or
 * while it waits, with one `res.once('close')` listener and no AbortController.
 */
import { EventEmitter, once } from 'node:events'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { admitRequest, createRateLimiter } from '../../proxy/rate-limit.ts'
import type { RateLimiter } from '../../proxy/rate-limit.ts'
import { unlimitedProfile } from '../../proxy/rate-profile.ts'

/** A handler that holds a request open when asked, so slots stay taken. */
function handler (limiter: RateLimiter, held: Map<string, http.ServerResponse>, events: EventEmitter) {
  return function limited (req: http.IncomingMessage, res: http.ServerResponse): void {
    const id = String(req.headers['x-id'])
    // Without admitRequest's own events, watch the queue to know when a request waits.
    const queuedBefore = limiter.snapshot()[0].queued
    admitRequest(limiter, req.socket.remoteAddress ?? '', 'p', res, () => {
      events.emit('admitted', id)
      if (req.headers['x-hold'] === '1') held.set(id, res)
      else res.end(id)
    }, (refusal) => {
      res.writeHead(429, { 'retry-after': String(refusal.retryAfterSec) }).end()
    })
    if (limiter.snapshot()[0].queued > queuedBefore) {
      events.emit('waiting', id)
      res.once('close', () => { if (!held.has(id) && !res.writableEnded) events.emit('aborted', id) })
    }
  }
}

t.test('a client disconnecting mid-request or while waiting frees the slot', async (t) => {
  const limiter = createRateLimiter({ profiles: [{ ...unlimitedProfile('p'), concurrentMaxRequests: 1, concurrentOverflowTimeoutMs: 10_000 }] })
  const held = new Map<string, http.ServerResponse>()
  const events = new EventEmitter()
  const server = http.createServer(handler(limiter, held, events))
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  t.teardown(() => {
    limiter.close()
    server.closeAllConnections()
    server.close()
  })

  const send = (id: string, hold: boolean): http.ClientRequest => {
    const req = http.request({ host: '127.0.0.1', port, agent: false, headers: { 'x-id': id, 'x-hold': hold ? '1' : '0' } })
    req.on('error', () => {})
    req.end()
    return req
  }
  const next = async (event: string, id: string): Promise<void> => {
    for (;;) {
      const [got] = await once(events, event) as [string]
      if (got === id) return
    }
  }
  const state = (): { inFlight: number, queued: number } => limiter.snapshot()[0]

  // A holds the only slot; B waits behind it.
  const admittedA = next('admitted', 'A')
  const a = send('A', true)
  await admittedA
  const waitingB = next('waiting', 'B')
  const b = send('B', false)
  await waitingB
  t.match(state(), { inFlight: 1, queued: 1 })

  // A's client disconnects mid-request: B gets the slot and its answer.
  const bResponse = once(b, 'response')
  a.destroy()
  const [resB] = await bResponse as [http.IncomingMessage]
  t.equal(resB.statusCode, 200)
  resB.resume()
  await once(resB, 'end')

  // C holds the slot; D waits and disconnects while waiting.
  const admittedC = next('admitted', 'C')
  send('C', true)
  await admittedC
  const waitingD = next('waiting', 'D')
  const d = send('D', false)
  await waitingD
  const abortedD = next('aborted', 'D')
  d.destroy()
  await abortedD
  t.match(state(), { inFlight: 1, queued: 0 }, 'D left the queue without a slot')

  // C finishes normally: the slot is free for E at once.
  const resC = held.get('C') as http.ServerResponse
  resC.end('C')
  await once(resC, 'close')
  t.match(state(), { inFlight: 0, queued: 0 })
  const admittedE = next('admitted', 'E')
  const e = send('E', false)
  await admittedE
  const [resE] = await once(e, 'response') as [http.IncomingMessage]
  t.equal(resE.statusCode, 200)
  resE.resume()
  await once(resE, 'end')
})
