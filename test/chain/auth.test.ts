// The PSK proofs: Bearer check and the forwarding token, both constant-time.
import t from 'tap'
import { createChainAuth } from '../../proxy/chain/auth.ts'

t.test('Bearer <psk> is accepted, anything else refused', async (t) => {
  const auth = createChainAuth('0123456789abcdef')
  const cases: Array<[string | undefined, boolean]> = [
    ['Bearer 0123456789abcdef', true],
    ['bearer 0123456789abcdef', true],
    ['Bearer  0123456789abcdef ', true],
    ['Bearer 0123456789abcdeF', false],
    ['Bearer 0123456789abcde', false],
    ['Bearer 0123456789abcdef0', false],
    ['Basic 0123456789abcdef', false],
    ['0123456789abcdef', false],
    ['Bearer ', false],
    ['', false],
    [undefined, false]
  ]
  for (const [header, ok] of cases) t.equal(auth.checkBearer(header), ok, String(header))
})

t.test('the forwarding token is derived from the PSK and checked exactly', async (t) => {
  const a = createChainAuth('0123456789abcdef')
  const b = createChainAuth('0123456789abcdeX')
  t.match(a.forwardToken, /^[0-9a-f]{64}$/)
  t.not(a.forwardToken, b.forwardToken, 'another PSK gives another token')
  t.not(a.forwardToken.includes('0123456789abcdef'), true, 'the PSK itself is not sent')
  t.equal(a.checkForwardToken(a.forwardToken), true)
  t.equal(a.checkForwardToken(b.forwardToken), false)
  t.equal(a.checkForwardToken(a.forwardToken.slice(1)), false)
  t.equal(a.checkForwardToken([a.forwardToken]), false, 'a repeated header is refused')
  t.equal(a.checkForwardToken(undefined), false)
})
