// A wrong PSK sent in a loop to the chain API: every refusal is counted, but the
// log gets one line per interval (with the number left out), not one per request.
import t from 'tap'
import { createChainApi, AUTH_LOG_INTERVAL_MS } from '../../proxy/chain/api.ts'
import { createChainAuth } from '../../proxy/chain/auth.ts'
import { memoryLogger } from '../chain/chain-helpers.ts'
import { wrongPskFlood } from './chain-attacks.ts'

t.test('1,000 wrong PSKs: 1,000 counted, one log line', async (t) => {
  const { logger, lines } = memoryLogger()
  let failures = 0
  const app = createChainApi({
    auth: createChainAuth('the-right-psk-0123456789'),
    logger,
    onAuthFailure: () => { failures++ },
    register: () => { throw new Error('never reached') },
    deregister: () => false,
    conflicts: () => [],
    status: () => ({})
  })
  const statuses = await wrongPskFlood((path, init) => app.request(path, init), 1000)
  t.same(statuses, { 401: 1000 })
  t.equal(failures, 1000)
  const logged = lines.filter((l) => l.msg === 'chain API: wrong or missing PSK')
  t.equal(logged.length, 1, `one line per ${AUTH_LOG_INTERVAL_MS} ms`)
})
