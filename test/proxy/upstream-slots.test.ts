// The per-origin slot queue and the shared deadline queue behind the forwarder.
import t from 'tap'
import { UpstreamSlots } from '../../proxy/upstream-slots.ts'
import { DeadlineQueue } from '../../proxy/deadline-queue.ts'

t.test('slots: at most max per origin, waiters served in order, a cancelled waiter never runs', async (t) => {
  const slots = new UpstreamSlots(2)
  const ran: string[] = []
  const waiter = (name: string): { onSlot: () => void } => ({ onSlot: () => { ran.push(name) } })
  t.equal(slots.acquire('a', waiter('1')), undefined, 'first slot is free')
  t.equal(slots.acquire('a', waiter('2')), undefined, 'second slot is free')
  t.equal(slots.acquire('b', waiter('b1')), undefined, 'another origin has its own slots')
  const w3 = slots.acquire('a', waiter('3'))
  const w4 = slots.acquire('a', waiter('4'))
  const w5 = slots.acquire('a', waiter('5'))
  t.ok(w3 !== undefined && w4 !== undefined && w5 !== undefined, 'beyond max, requests wait')
  t.same(slots.stats('a'), { active: 2, waiting: 3 })
  t.equal(slots.cancel('a', w4!), true, 'a waiter leaves the middle of the queue')
  t.equal(slots.cancel('a', w4!), false, 'only once')
  slots.release('a')
  slots.release('a')
  t.same(ran, ['3', '5'], 'in order, without the one that left')
  t.equal(slots.cancel('a', w3!), false, 'a granted ticket cannot be cancelled')
  slots.release('a')
  slots.release('a')
  t.same(slots.stats('a'), { active: 0, waiting: 0 })
  slots.release('b')
  t.same((slots as unknown as { origins: Map<string, unknown> }).origins.size, 0, 'idle origins leave no entry behind')
})

t.test('deadlines: fire once after the duration, in order; cancelled ones never fire', async (t) => {
  const queue = new DeadlineQueue(100, 20)
  t.teardown(() => { queue.close() })
  const fired: Array<{ name: string, ms: number }> = []
  const start = performance.now()
  let bothFired = (): void => {}
  const both = new Promise<void>((resolve) => { bothFired = resolve })
  const fire = (name: string): void => {
    fired.push({ name, ms: performance.now() - start })
    if (fired.length === 2) bothFired()
  }
  queue.start(fire, 'a')
  const b = queue.start(fire, 'b')
  queue.start(fire, 'c')
  queue.cancel(b)
  t.equal(queue.size, 2)
  // The queue's timer is unref'd (it must not keep a proxy alive): hold the loop open meanwhile.
  const keepAlive = setTimeout(() => {}, 5000)
  await both
  clearTimeout(keepAlive)
  t.same(fired.map((f) => f.name), ['a', 'c'])
  for (const f of fired) t.ok(f.ms >= 99 && f.ms < 300, `fired after ${Math.round(f.ms)} ms`)
  t.equal(queue.size, 0)
  t.equal(new DeadlineQueue(0).start(fire, 'never'), undefined, 'duration 0 disables deadlines')
})
