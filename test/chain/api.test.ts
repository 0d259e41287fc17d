// The chain API's contract, on the hono app without a network: PSK, bodies, 409, check.
import t from 'tap'
import { createChainApi, MAX_BODY_BYTES } from '../../proxy/chain/api.ts'
import { createChainAuth } from '../../proxy/chain/auth.ts'
import { createChildRegistry } from '../../proxy/chain/registry.ts'
import { memoryLogger } from './chain-helpers.ts'

const PSK = '0123456789abcdef-api'

function setup () {
  const { logger, lines } = memoryLogger()
  const registry = createChildRegistry({ leaseTtlMs: 60_000, parentServes: (d) => d === 'own.example.com' })
  let authFailures = 0
  const app = createChainApi({
    auth: createChainAuth(PSK),
    logger,
    onAuthFailure: () => { authFailures++ },
    register: (request) => ({ leaseTtlMs: 60_000, domains: registry.register(request, Date.now()).record.domains }),
    deregister: (name) => registry.deregister(name) !== undefined,
    conflicts: (name, domains) => registry.conflicts(name, domains),
    status: () => ({ children: registry.children().map((c) => c.name) })
  })
  const call = async (path: string, body?: unknown, psk: string | null = PSK, raw?: string) => {
    const res = await app.request(`/chain/v1/${path}`, {
      method: body === undefined && raw === undefined ? 'GET' : 'POST',
      headers: { 'content-type': 'application/json', ...(psk === null ? {} : { authorization: `Bearer ${psk}` }) },
      body: raw ?? (body === undefined ? undefined : JSON.stringify(body))
    })
    return { status: res.status, body: await res.json() as any, headers: res.headers }
  }
  return { call, lines, registry, failures: () => authFailures }
}

t.test('a wrong or missing PSK gets 401 on every endpoint, and is counted', async (t) => {
  const { call, failures, lines } = setup()
  for (const path of ['register', 'deregister', 'check', 'status', 'nope']) {
    const wrong = await call(path, path === 'status' ? undefined : {}, 'not-the-psk-at-all')
    t.equal(wrong.status, 401, `${path} with a wrong PSK`)
    t.equal(wrong.body.error.code, 'CHAIN_UNAUTHORIZED')
    t.equal(wrong.headers.get('www-authenticate'), 'Bearer realm="vmfront-chain"')
  }
  t.equal((await call('status', undefined, null)).status, 401, 'missing PSK')
  t.equal(failures(), 6)
  t.ok(lines.some((l) => l.msg === 'chain API: wrong or missing PSK'), 'logged')
})

t.test('register answers the lease and the domains; renewals are idempotent', async (t) => {
  const { call } = setup()
  const body = { name: 'child-1', child_url: 'http://10.0.0.5:80', domains: [{ domain: 'b.example.com' }, { domain: 'a.example.com', rate_profile: 'slow' }] }
  const res = await call('register', body)
  t.equal(res.status, 200)
  t.same(res.body, { lease_ttl_seconds: 60, domains: [{ domain: 'a.example.com', rate_profile: 'slow' }, { domain: 'b.example.com' }] })
  t.equal((await call('register', body)).status, 200)
  t.same((await call('status')).body, { children: ['child-1'] })
  t.same((await call('deregister', { name: 'child-1' })).body, { deregistered: true })
  t.same((await call('deregister', { name: 'child-1' })).body, { deregistered: false })
})

t.test('conflicts: 409 naming domain and owner, and the check endpoint', async (t) => {
  const { call, registry } = setup()
  await call('register', { name: 'a', child_url: 'http://10.0.0.1', domains: [{ domain: 'a.example.com' }] })
  const res = await call('register', { name: 'b', child_url: 'http://10.0.0.2', domains: [{ domain: 'a.example.com' }, { domain: 'own.example.com' }, { domain: 'b.example.com' }] })
  t.equal(res.status, 409)
  t.equal(res.body.error.code, 'CHAIN_DOMAIN_CONFLICT')
  t.same(res.body.error.conflicts, [{ domain: 'a.example.com', owner: 'a' }, { domain: 'own.example.com', owner: '(parent)' }])
  t.match(res.body.error.message, /a\.example\.com \(owner: a\)/)
  t.equal(registry.get('b'), undefined)
  const check = await call('check', { name: 'b', domains: ['a.example.com', 'free.example.com'] })
  t.equal(check.status, 200)
  t.same(check.body, { conflicts: [{ domain: 'a.example.com', owner: 'a' }] })
  t.same((await call('check', { name: 'a', domains: ['a.example.com'] })).body, { conflicts: [] }, 'its own domain is no conflict')
})

t.test('bad bodies get 400 naming the field', async (t) => {
  const { call } = setup()
  const cases: Array<[string, unknown, RegExp]> = [
    ['register', { child_url: 'http://x', domains: [] }, /^name: is required/],
    ['register', { name: 'bad name', child_url: 'http://x', domains: [] }, /^name: "bad name" is not a valid child name/],
    ['register', { name: 'a', child_url: 'ftp://x', domains: [] }, /^child_url: .* must use http/],
    ['register', { name: 'a', child_url: 'http://x:80/path', domains: [] }, /^child_url: .* only scheme:\/\/host:port/],
    ['register', { name: 'a', child_url: 'http://u:p@x', domains: [] }, /^child_url: .*credentials/],
    ['register', { name: 'a', child_url: 'not a url', domains: [] }, /^child_url: .* is not a URL/],
    ['register', { name: 'a', child_url: 'http://x', domains: 'a.example.com' }, /^domains: is required and must be an array/],
    ['register', { name: 'a', child_url: 'http://x', domains: [{ domain: 'Upper.Example.com' }] }, /^domains\[0\]\.domain: .*lower-case/],
    ['register', { name: 'a', child_url: 'http://x', domains: [{ domain: 'ok.example.com' }, { domain: '10.0.0.1' }] }, /^domains\[1\]\.domain: .*IP address/],
    ['register', { name: 'a', child_url: 'http://x', domains: [{ domain: 'a.example.com' }, { domain: 'a.example.com' }] }, /^domains\[1\]\.domain: .*listed twice/],
    ['register', { name: 'a', child_url: 'http://x', domains: [{ domain: 'a.example.com', rate_profile: 'a b' }] }, /^domains\[0\]\.rate_profile: /],
    ['register', { name: 'a', child_url: 'http://x', domains: [{ domain: 'a.example.com', extra: 1 }] }, /^domains\[0\]\.extra: is not a known key/],
    ['register', { name: 'a', child_url: 'http://x', domains: [], more: true }, /^more: is not a known key/],
    ['register', [1, 2], /^body: must be a JSON object/],
    ['check', { name: 'a', domains: ['ok.example.com', 'bad_domain'] }, /^domains\[1\]: /],
    ['deregister', {}, /^name: is required/]
  ]
  for (const [path, body, message] of cases) {
    const res = await call(path, body)
    t.equal(res.status, 400, `${path} ${JSON.stringify(body)}`)
    t.equal(res.body.error.code, 'CHAIN_BAD_REQUEST')
    t.match(res.body.error.message, message)
  }
  const notJson = await call('register', undefined, PSK, '{"name":')
  t.equal(notJson.status, 400)
  t.match(notJson.body.error.message, /^body: is not valid JSON/)
})

t.test('an oversized body gets 413 without being parsed', async (t) => {
  const { call } = setup()
  const res = await call('register', undefined, PSK, JSON.stringify({ name: 'a', pad: 'x'.repeat(MAX_BODY_BYTES) }))
  t.equal(res.status, 413)
  t.equal(res.body.error.code, 'CHAIN_PAYLOAD_TOO_LARGE')
})
