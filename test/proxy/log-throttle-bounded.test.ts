/**
 * proxy/log-throttle.ts stays bounded as route domains churn (issue 9, point 7): keys
 * whose window has passed are dropped once the map is past its soft size, the map
 * never exceeds its hard size, and below the soft size counts are exact.
 */
import t from 'tap'
import { createLogThrottle } from '../../proxy/log-throttle.ts'

t.test('200,000 churning domains: the map stays at the soft size, lines still throttled', async (t) => {
  let now = 0
  const throttle = createLogThrottle(1000, () => now)
  let peak = 0
  let logged = 0
  for (let i = 0; i < 200_000; i++) {
    if (throttle.admit(`vm-${i}.example.com refused`) === 0) logged++
    now += 1
    peak = Math.max(peak, throttle.size ?? Number.NaN)
  }
  t.equal(logged, 200_000, 'each new domain gets its line')
  // 1 ms apart on a 1 s window: ~1,000 keys are inside their window at any time.
  t.ok(peak <= 1025, `peak ${peak} keys (of 200,000 seen)`)
  // The throttle still works for keys inside their window.
  t.equal(throttle.admit('vm-199999.example.com refused'), -1)
  now += 1000
  t.equal(throttle.admit('vm-199999.example.com refused'), 1, 'its count survived')
})

t.test('keys all inside their window: the hard cap holds, oldest first', async (t) => {
  let now = 0
  const throttle = createLogThrottle(60_000, () => now, { softKeys: 10, maxKeys: 100 })
  for (let i = 0; i < 10_000; i++) {
    throttle.admit(`k${i}`)
    if (throttle.size > 100) return t.fail(`${throttle.size} keys after ${i + 1}`)
  }
  t.equal(throttle.size, 100)
  t.equal(throttle.admit('k9999'), -1, 'the newest keys are kept (still throttled)')
  t.equal(throttle.admit('k0'), 0, 'the oldest went first (logged again)')
})

t.test('below the soft size nothing is dropped: suppressed counts are exact', async (t) => {
  let now = 0
  const throttle = createLogThrottle(1000, () => now, { softKeys: 100, maxKeys: 1000 })
  throttle.admit('a')
  for (let i = 0; i < 5; i++) t.equal(throttle.admit('a'), -1)
  now = 50_000
  for (let i = 0; i < 50; i++) throttle.admit(`other${i}`)
  t.equal(throttle.admit('a'), 5, 'the 5 suppressed lines are reported long after')
  // A key that logs again moves to the back: the ones that went quiet go first.
  now = 60_000
  for (let i = 0; i < 200; i++) throttle.admit(`late${i}`)
  t.equal(throttle.admit('a'), 0, 'dropped once past the soft size, its window long passed')
})
