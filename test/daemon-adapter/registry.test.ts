/**
 * The node:sqlite registry: domain ownership, revisions, locks, and persistence
 * across a reopen (what a restart sees).
 */
import t from 'tap'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { openRegistry } from '../../daemon-adapter/registry.ts'
import type { Placement } from '../../daemon-adapter/registry.ts'
import { parseVmDefinitionText } from '../../daemon-adapter/vm-definition.ts'
import { tempDir } from './daemon-process.ts'

const ctx = { driver: 'static', defaultNetwork: 'default' } as const
const vm = (name: string, domains: string[], address = '10.0.0.5', redirects = ''): ReturnType<typeof parseVmDefinitionText> =>
  parseVmDefinitionText(`name = "${name}"\naddress = "${address}"\ndomains = ${JSON.stringify(domains)}\n${redirects}`, `${name}.toml`, ctx)
const place = (address: string) => (n: number): Placement => ({ address, handle: `h-r${n}` })

t.test('create, activate, conflicts name the domain and its owner', async (t) => {
  const reg = openRegistry(join(tempDir(t), 'r.sqlite'))
  t.teardown(() => { reg.close() })
  const r0 = reg.beginRevision(vm('app', ['app.example.com->8080']), { create: true }, place('10.0.0.5'))
  t.equal(r0.number, 0)
  t.equal(r0.state, 'pending')
  t.same(reg.activeRevisions(), [], 'a pending revision has no routes')
  t.equal(reg.activate(r0.id), undefined)
  t.same(reg.activeRevisions().map((r) => r.vm), ['app'])

  t.throws(() => reg.beginRevision(vm('app', ['x.example.com']), { create: true }, place('x')), { code: 'VM_EXISTS' })
  const err = t.throws(() => reg.beginRevision(vm('other', ['new.example.com', 'app.example.com']), { create: true }, place('x'))) as Error
  t.match(err, { code: 'DOMAIN_CONFLICT', details: { conflicts: [{ domain: 'app.example.com', owner: 'app' }] } })
  t.match(err.message, 'app.example.com')
  t.match(err.message, '"app"')
  t.equal(reg.get('other'), undefined, 'the refused VM was not half created')
  t.same(reg.conflicts(['app.example.com', 'free.example.com'], 'other'), [{ domain: 'app.example.com', owner: 'app' }])
  t.same(reg.conflicts(['app.example.com'], 'app'), [], 'a VM does not conflict with itself')

  // A redirect source is a claimed domain too.
  const r = reg.beginRevision(vm('b', ['b.example.com'], '10.0.0.6', "redirects = [['www.b.example.com', 'b.example.com']]"), { create: true }, place('10.0.0.6'))
  reg.activate(r.id)
  t.throws(() => reg.beginRevision(vm('c', ['www.b.example.com']), { create: true }, place('x')), { code: 'DOMAIN_CONFLICT', message: /www\.b\.example\.com.*"b"/ })
})

t.test('rebuild: r+1 is pending beside r, then replaces it', async (t) => {
  const reg = openRegistry(join(tempDir(t), 'r.sqlite'))
  t.teardown(() => { reg.close() })
  reg.activate(reg.beginRevision(vm('app', ['app.example.com']), { create: true }, place('10.0.0.5')).id)
  const r1 = reg.beginRevision(vm('app', ['app.example.com', 'more.example.com']), { create: false }, place('10.0.0.9'))
  t.equal(r1.number, 1)
  t.same(reg.activeRevisions().map((r) => [r.number, r.address]), [[0, '10.0.0.5']], 'r0 still serves while r1 is pending')
  t.throws(() => reg.beginRevision(vm('app', ['app.example.com']), { create: false }, place('x')), { code: 'VM_BUSY' }, 'one change at a time')
  const old = reg.activate(r1.id)
  t.equal(old?.number, 0)
  t.equal(old?.state, 'retiring')
  t.same(reg.activeRevisions().map((r) => [r.number, r.address]), [[1, '10.0.0.9']])
  t.same(reg.unfinishedRevisions().map((r) => [r.number, r.state]), [[0, 'retiring']])
  reg.removeRevision(old?.id ?? -1)
  t.same(reg.get('app')?.revisions.map((r) => r.number), [1])
  t.same([...reg.domainsOf('app')].sort(), ['app.example.com', 'more.example.com'])

  // A failed rebuild is removed and the VM keeps its active revision.
  const r2 = reg.beginRevision(vm('app', ['app.example.com']), { create: false }, place('10.0.0.7'))
  t.equal(r2.number, 2)
  reg.removeRevision(r2.id)
  t.same(reg.get('app')?.revisions.map((r) => [r.number, r.state]), [[1, 'active']])
  // A failed create (removing its only revision) removes the VM.
  const lone = reg.beginRevision(vm('lone', ['lone.example.com']), { create: true }, place('10.0.0.8'))
  reg.removeRevision(lone.id)
  t.equal(reg.get('lone'), undefined)
  t.same(reg.conflicts(['lone.example.com'], 'x'), [], 'its claims went with it')
})

t.test('locks: a locked VM cannot be rebuilt or deleted', async (t) => {
  const reg = openRegistry(join(tempDir(t), 'r.sqlite'))
  t.teardown(() => { reg.close() })
  reg.activate(reg.beginRevision(vm('app', ['app.example.com']), { create: true }, place('10.0.0.5')).id)
  t.equal(reg.setLocked('app', true).locked, true)
  t.throws(() => reg.beginRevision(vm('app', ['app.example.com']), { create: false }, place('x')), { code: 'VM_LOCKED' })
  t.throws(() => reg.retireAll('app'), { code: 'VM_LOCKED' })
  t.equal(reg.activeRevisions().length, 1, 'nothing changed')
  t.equal(reg.setLocked('app', false).locked, false)
  const retired = reg.retireAll('app')
  t.same(retired.map((r) => r.state), ['retiring'])
  t.same(reg.activeRevisions(), [], 'routes go at once')
  for (const r of retired) reg.removeRevision(r.id)
  t.equal(reg.get('app'), undefined)
  t.throws(() => reg.setLocked('nope', true), { code: 'VM_NOT_FOUND' })
})

t.test('persistence: a reopened registry has everything, in WAL mode', async (t) => {
  const file = join(tempDir(t), 'r.sqlite')
  const a = openRegistry(file)
  a.activate(a.beginRevision(vm('app', ['app.example.com->8080']), { create: true }, place('10.0.0.5')).id)
  a.setLocked('app', true)
  const pending = a.beginRevision(vm('web', ['web.example.com']), { create: true }, place('10.0.0.6'))
  a.close()

  const b = openRegistry(file)
  t.teardown(() => { b.close() })
  const app = b.get('app')
  t.equal(app?.locked, true)
  t.same(app?.revisions.map((r) => [r.number, r.state, r.address]), [[0, 'active', '10.0.0.5']])
  t.same(app?.revisions[0].definition.domains, [{ domain: 'app.example.com', port: 8080 }])
  t.same(b.unfinishedRevisions().map((r) => r.id), [pending.id], 'the pending revision is found for clean-up')
  t.throws(() => b.beginRevision(vm('x', ['web.example.com']), { create: true }, place('x')), { code: 'DOMAIN_CONFLICT' }, 'claims persisted')

  const raw = new DatabaseSync(file)
  t.teardown(() => { raw.close() })
  t.equal((raw.prepare('PRAGMA journal_mode').get() as { journal_mode: string }).journal_mode, 'wal')
})

t.test('the schema itself refuses a second owner, even bypassing the checks', async (t) => {
  const file = join(tempDir(t), 'r.sqlite')
  const reg = openRegistry(file)
  reg.activate(reg.beginRevision(vm('app', ['app.example.com']), { create: true }, place('10.0.0.5')).id)
  reg.activate(reg.beginRevision(vm('two', ['two.example.com']), { create: true }, place('10.0.0.6')).id)
  reg.close()
  const raw = new DatabaseSync(file)
  t.teardown(() => { raw.close() })
  const two = raw.prepare("SELECT id FROM revisions WHERE vm = 'two'").get() as { id: number }
  t.throws(() => raw.prepare("INSERT INTO claims (domain, vm, revision_id) VALUES ('app.example.com', 'two', ?)").run(two.id), /claimed by another VM/)
  t.throws(() => raw.prepare("INSERT INTO revisions (vm, number, state, definition, address, handle, created_at) VALUES ('two', 9, 'active', '{}', 'x', 'h', 'now')").run(), /UNIQUE/, 'one active revision per VM')
})

t.test('a transaction that fails half-way leaves nothing behind', async (t) => {
  const reg = openRegistry(join(tempDir(t), 'r.sqlite'))
  t.teardown(() => { reg.close() })
  t.throws(() => reg.beginRevision(vm('app', ['app.example.com']), { create: true }, () => { throw new Error('no IP left') }), /no IP left/)
  t.equal(reg.get('app'), undefined)
  t.same(reg.list(), [])
})
