// Mulch children in the parent's registry (pure, no I/O): no lease, one namespace with
// vmfront children, domains move between Mulch ForwardTos of one host, forget by name or URL,
// and Mulch's JSON parsed the way Go decodes it.
import t from 'tap'
import { createChildRegistry } from '../../proxy/chain/registry.ts'
import { parseMulchDomains } from '../../proxy/chain/mulch-api.ts'
import { DomainConflictError } from '../../proxy/chain/errors.ts'

const A = 'http://10.0.0.5:8080'
const mulch = (url: string, ...domains: string[]) => ({ name: url, childUrl: url, domains: domains.map((domain) => ({ domain })), protocol: 'mulch' as const })

t.test('a Mulch child has no lease: sweep never drops it', async (t) => {
  const r = createChildRegistry({ leaseTtlMs: 1000, parentServes: () => false })
  r.register(mulch(A, 'a.example.com'), 0)
  r.register({ name: 'v1', childUrl: 'http://10.0.0.9:80', domains: [{ domain: 'v.example.com' }] }, 0)
  t.same(r.sweep(1_000_000).map((c) => c.name), ['v1'])
  t.equal(r.get(A)?.protocol, 'mulch')
  t.equal(r.get(A)?.expiresAt, Infinity)
})

t.test('one namespace between kinds; a Mulch ForwardTo on the same host takes its host\'s domains', async (t) => {
  const r = createChildRegistry({ leaseTtlMs: 1000, parentServes: (d) => d === 'own.example.com' })
  r.register(mulch(A, 'a.example.com', 'b.example.com'), 0)
  t.throws(() => r.register({ name: 'v1', childUrl: 'http://10.0.0.9:80', domains: [{ domain: 'a.example.com' }] }, 0), DomainConflictError)
  r.register({ name: 'v1', childUrl: 'http://10.0.0.9:80', domains: [{ domain: 'v.example.com' }] }, 0)
  t.throws(() => r.register(mulch('http://10.0.0.6:80', 'v.example.com'), 0), DomainConflictError, 'a Mulch child cannot take a vmfront child\'s domain')
  t.throws(() => r.register(mulch('http://10.0.0.6:80', 'a.example.com'), 0), DomainConflictError, 'nor another host\'s Mulch domain')
  t.same(r.conflicts('x', ['own.example.com', 'a.example.com'], 'http://10.0.0.5:9090'), [{ domain: 'own.example.com', owner: '(parent)' }], 'same host: no conflict, as mulch-proxy')
  const moved = r.register(mulch('http://10.0.0.5:9090', 'a.example.com'), 1)
  t.same(moved.moved?.map((m) => [m.from.name, m.now?.domains.map((d) => d.domain)]), [[A, ['b.example.com']]])
  const all = r.register(mulch('http://10.0.0.5:9090', 'a.example.com', 'b.example.com'), 2)
  t.equal(all.moved?.[0].now, undefined, 'a child left with no domain goes')
  t.equal(r.get(A), undefined)
})

t.test('forget by name or by URL', async (t) => {
  const r = createChildRegistry({ leaseTtlMs: 1000, parentServes: () => false })
  r.register(mulch(A, 'a.example.com'), 0)
  r.register({ name: 'v1', childUrl: 'http://10.0.0.9:80', domains: [{ domain: 'v.example.com' }] }, 0)
  t.same(r.forget(`${A}/`).map((c) => c.name), [A])
  t.same(r.forget('v1').map((c) => c.name), ['v1'])
  t.same(r.forget('nobody'), [])
  t.equal(r.size, 0)
})

t.test('Mulch\'s JSON as Go decodes it', async (t) => {
  t.same(parseMulchDomains({ Domains: [{ Domain: 'A_b.Example.com', RateProfile: 'x' }], ForwardTo: 'http://c:80' }), { forwardTo: 'http://c', domains: [{ domain: 'a_b.example.com', rateProfile: 'x' }] })
  t.same(parseMulchDomains({ domains: null, forwardto: 'http://c:81', Extra: 1 }), { forwardTo: 'http://c:81', domains: [] }, 'any key case, unknown keys skipped, null list')
  t.throws(() => parseMulchDomains({ Domains: [], ForwardTo: 'ftp://c' }), /ForwardTo/)
  t.throws(() => parseMulchDomains({ Domains: [{ Domain: 'a b' }], ForwardTo: 'http://c' }), /Domains\[0\]\.Domain/)
})

t.test('Mulch children are saved and restored as Mulch children (mulchd\'s names included)', async (t) => {
  const { mkdtempSync, rmSync } = await import('node:fs')
  const { tmpdir } = await import('node:os')
  const { join } = await import('node:path')
  const { createRegistrationStore } = await import('../../proxy/chain/persist.ts')
  const { memoryLogger } = await import('./chain-helpers.ts')
  const dir = mkdtempSync(join(tmpdir(), 'vmfront-mulch-persist-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const { logger, lines } = memoryLogger()
  const store = createRegistrationStore(join(dir, 'chain-children.json'), logger)
  const r = createChildRegistry({ leaseTtlMs: 1000, parentServes: () => false })
  r.register({ ...mulch(A, 'a_b.example.com'), domains: [{ domain: 'a_b.example.com', rateProfile: 'wp' }] }, 5)
  r.register({ name: 'v1', childUrl: 'http://10.0.0.9', domains: [{ domain: 'v.example.com' }] }, 5)
  await store.save(r.children())
  const loaded = await store.load()
  t.same(lines.filter((l) => l.level === 'error'), [], 'nothing refused')
  t.same(loaded.map((c) => [c.name, c.url, c.protocol, c.domains]), [
    [A, A, 'mulch', [{ domain: 'a_b.example.com', rateProfile: 'wp' }]],
    ['v1', 'http://10.0.0.9', undefined, [{ domain: 'v.example.com' }]]
  ])
  const again = createChildRegistry({ leaseTtlMs: 1000, parentServes: () => false })
  again.restore(loaded, 100)
  t.equal(again.get(A)?.expiresAt, Infinity, 'still no lease after a restart')
  t.equal(again.get('v1')?.expiresAt, 1100)
})
