import t from 'tap'
import { createLogThrottle } from '../../proxy/log-throttle.ts'

t.test('one line per key per interval, with the suppressed count', async (t) => {
  let now = 0
  const throttle = createLogThrottle(1000, () => now)
  t.equal(throttle.admit('a'), 0)
  t.equal(throttle.admit('a'), -1)
  t.equal(throttle.admit('a'), -1)
  t.equal(throttle.admit('b'), 0, 'keys are independent')
  now = 1000
  t.equal(throttle.admit('a'), 2, 'the next line says two were suppressed')
  t.equal(throttle.admit('a'), -1)
})
