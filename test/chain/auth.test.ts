// The PSK proofs: Bearer check and the per-session proof, both constant-time.
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

t.test('the session proof is bound to the PSK, the child origin and the nonce, and checked exactly', async (t) => {
  const a = createChainAuth('0123456789abcdef')
  const b = createChainAuth('0123456789abcdeX')
  const origin = 'http://10.0.0.2'
  const nonce = 'ab'.repeat(32)
  const proof = a.sessionProof(origin, nonce)
  t.match(proof, /^[0-9a-f]{64}$/)
  t.not(proof.includes('0123456789abcdef'), true, 'the PSK itself is not sent')
  t.equal(a.checkSessionProof(origin, nonce, proof), true)
  t.equal(b.checkSessionProof(origin, nonce, proof), false, 'another PSK')
  t.equal(a.checkSessionProof(origin, 'cd'.repeat(32), proof), false, 'another nonce: a proof does not carry over')
  t.equal(a.checkSessionProof('http://10.0.0.3', nonce, proof), false, 'another child')
  t.equal(a.checkSessionProof(origin, nonce, proof.slice(1)), false)
  t.equal(a.checkSessionProof(origin, nonce, [proof]), false, 'a repeated header is refused')
  t.equal(a.checkSessionProof(origin, nonce, undefined), false)
  t.not(a.controlKey(origin, nonce), proof, 'the control key is not the proof')
  t.not(a.controlKey(origin, nonce), b.controlKey(origin, nonce))
})
