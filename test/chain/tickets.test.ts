// The one-time WebSocket tickets of a chain child (parent-trust.ts): the same store
// serves a single process and, through its primary, every worker (proxy/chain/shared.ts).
import t from 'tap'
import { createTicketStore, MAX_TICKETS, TICKET_TTL_MS } from '../../proxy/chain/parent-trust.ts'

t.test('a ticket is taken once, from the address it was issued for, before it expires', async (t) => {
  let now = 1_000_000
  const store = createTicketStore(() => now)
  const a = await store.issue('10.0.0.1')
  t.match(a, /^[0-9a-f]{64}$/)
  t.equal(store.size(), 1)
  t.equal(await store.take(a!, '10.0.0.1'), 'ok')
  t.equal(await store.take(a!, '10.0.0.1'), 'unknown', 'spent: a second take finds nothing')
  const b = await store.issue('10.0.0.1')
  t.equal(await store.take(b!, '10.0.0.9'), 'address', 'another address')
  t.equal(await store.take(b!, '10.0.0.1'), 'unknown', 'and it is spent by that try')
  const c = await store.issue('10.0.0.1')
  now += TICKET_TTL_MS
  t.equal(await store.take(c!, '10.0.0.1'), 'expired')
  t.equal(await store.take('f'.repeat(64), '10.0.0.1'), 'unknown')
  t.equal(store.size(), 0)
})

t.test('at most MAX_TICKETS outstanding; expired ones make room', async (t) => {
  let now = 0
  const store = createTicketStore(() => now)
  for (let i = 0; i < MAX_TICKETS; i++) await store.issue('10.0.0.1')
  t.equal(await store.issue('10.0.0.1'), undefined, 'one more is refused')
  now += TICKET_TTL_MS
  t.match(await store.issue('10.0.0.1'), /^[0-9a-f]{64}$/, 'once they expired, a new one is issued')
  t.equal(store.size(), 1)
})
