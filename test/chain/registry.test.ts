// The parent's registry: ownership, conflicts, replacement, leases and restore.
import t from 'tap'
import { createChildRegistry, PARENT_OWNER } from '../../proxy/chain/registry.ts'
import { DomainConflictError } from '../../proxy/chain/errors.ts'

const reg = (name: string, url: string, ...domains: string[]) => ({ name, childUrl: url, domains: domains.map((domain) => ({ domain })) })

function make (parentDomains: string[] = []) {
  return createChildRegistry({ leaseTtlMs: 1000, parentServes: (d) => parentDomains.includes(d) })
}

t.test('registration, renewal and replacement by name', async (t) => {
  const r = make()
  const first = r.register(reg('a', 'http://10.0.0.1:80', 'x.example.com', 'a.example.com'), 0)
  t.equal(first.changed, true)
  t.same(first.record.domains.map((d) => d.domain), ['a.example.com', 'x.example.com'], 'domains sorted')
  t.equal(first.record.expiresAt, 1000)
  const renew = r.register(reg('a', 'http://10.0.0.1:80', 'a.example.com', 'x.example.com'), 500)
  t.equal(renew.changed, false, 'same URL and domains: a renewal')
  t.equal(renew.record.expiresAt, 1500)
  t.equal(renew.record.registeredAt, 0)
  const moved = r.register(reg('a', 'http://10.0.0.2:8080', 'a.example.com'), 600)
  t.equal(moved.changed, true)
  t.equal(moved.previous?.url, 'http://10.0.0.1:80')
  t.equal(moved.record.registeredAt, 600, 'a new URL is a new registration')
  t.same(r.conflicts('b', ['x.example.com']), [], 'a domain the child dropped is free again')
  t.equal(r.size, 1)
})

t.test('conflicts: other children and the parent file, all or nothing', async (t) => {
  const r = make(['own.example.com'])
  r.register(reg('a', 'http://10.0.0.1', 'a.example.com'), 0)
  t.same(r.conflicts('b', ['a.example.com', 'b.example.com', 'own.example.com']), [
    { domain: 'a.example.com', owner: 'a' },
    { domain: 'own.example.com', owner: PARENT_OWNER }
  ])
  t.same(r.conflicts('a', ['a.example.com']), [], 'a child does not conflict with itself')
  const err = t.throws(() => r.register(reg('b', 'http://10.0.0.2', 'b.example.com', 'a.example.com'), 0)) as DomainConflictError
  t.equal(err.code, 'CHAIN_DOMAIN_CONFLICT')
  t.equal(err.status, 409)
  t.same(err.conflicts, [{ domain: 'a.example.com', owner: 'a' }])
  t.equal(r.get('b'), undefined, 'nothing of the refused registration was kept')
  t.same(r.conflicts('c', ['b.example.com']), [])
})

t.test('a held domain stays held even once the parent file has it', async (t) => {
  const parent: string[] = []
  const r = make(parent)
  r.register(reg('a', 'http://10.0.0.1', 'a.example.com'), 0)
  parent.push('a.example.com')
  t.doesNotThrow(() => r.register(reg('a', 'http://10.0.0.1', 'a.example.com'), 100), 'the renewal does not fail')
  t.same(r.conflicts('b', ['a.example.com']), [{ domain: 'a.example.com', owner: 'a' }])
})

t.test('leases expire in sweep; deregistration frees the domains', async (t) => {
  const r = make()
  r.register(reg('a', 'http://10.0.0.1', 'a.example.com'), 0)
  r.register(reg('b', 'http://10.0.0.2', 'b.example.com'), 500)
  t.same(r.sweep(999).map((c) => c.name), [])
  t.same(r.sweep(1000).map((c) => c.name), ['a'])
  t.same(r.conflicts('z', ['a.example.com']), [], 'the expired child no longer owns its domain')
  t.equal(r.deregister('b')?.name, 'b')
  t.equal(r.deregister('b'), undefined)
  t.equal(r.size, 0)
})

t.test('restore gives fresh leases and skips taken domains', async (t) => {
  const r = make()
  r.register(reg('live', 'http://10.0.0.9', 'taken.example.com'), 5000)
  const restored = r.restore([
    { name: 'a', url: 'http://10.0.0.1', domains: [{ domain: 'a.example.com', rateProfile: 'slow' }, { domain: 'taken.example.com' }], registeredAt: 1 },
    { name: 'live', url: 'http://10.0.0.3', domains: [], registeredAt: 1 }
  ], 5000)
  t.same(restored.map((c) => c.name), ['a'], 'a child that already registered is not overwritten')
  t.same(r.get('a')?.domains, [{ domain: 'a.example.com', rateProfile: 'slow' }])
  t.equal(r.get('a')?.expiresAt, 6000)
  t.equal(r.get('live')?.url, 'http://10.0.0.9')
})
