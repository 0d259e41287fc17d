// Saved registrations: atomic, 0600, coalesced writes; corrupt files are ignored, not fatal.
import t from 'tap'
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createRegistrationStore } from '../../proxy/chain/persist.ts'
import type { ChildRecord } from '../../proxy/chain/registry.ts'
import { tempDir } from '../helpers/proxy-process.ts'
import { memoryLogger } from './chain-helpers.ts'

const child = (name: string, n: number): ChildRecord => ({
  name, url: `http://10.0.0.${n}:80`, domains: [{ domain: `${name}.example.com`, rateProfile: 'slow' }, { domain: `www.${name}.example.com` }], registeredAt: Date.UTC(2026, 0, n), renewedAt: 0, expiresAt: 0
})

t.test('save then load round-trips; the file is 0600 and no temp file is left', async (t) => {
  const dir = tempDir(t)
  const file = join(dir, 'chain-children.json')
  const { logger } = memoryLogger()
  const store = createRegistrationStore(file, logger)
  t.same(await store.load(), [], 'a missing file is an empty list')
  await store.save([child('a', 1), child('b', 2)])
  t.equal(statSync(file).mode & 0o777, 0o600)
  t.same(readdirSync(dir), ['chain-children.json'])
  const loaded = await store.load()
  t.same(loaded, [
    { name: 'a', url: 'http://10.0.0.1', domains: [{ domain: 'a.example.com', rateProfile: 'slow' }, { domain: 'www.a.example.com' }], registeredAt: Date.UTC(2026, 0, 1) },
    { name: 'b', url: 'http://10.0.0.2', domains: [{ domain: 'b.example.com', rateProfile: 'slow' }, { domain: 'www.b.example.com' }], registeredAt: Date.UTC(2026, 0, 2) }
  ])
})

t.test('a burst of saves ends with the last state on disk', async (t) => {
  const dir = tempDir(t)
  const file = join(dir, 'chain-children.json')
  const store = createRegistrationStore(file, memoryLogger().logger)
  const saves = []
  for (let i = 1; i <= 20; i++) saves.push(store.save(Array.from({ length: i }, (_, k) => child(`c${k}`, k + 1))))
  await Promise.all(saves)
  t.equal((JSON.parse(readFileSync(file, 'utf8')) as { children: unknown[] }).children.length, 20)
})

t.test('a corrupt or invalid file is logged and ignored', async (t) => {
  const dir = tempDir(t)
  const file = join(dir, 'chain-children.json')
  const { logger, lines } = memoryLogger()
  const store = createRegistrationStore(file, logger)
  writeFileSync(file, '{"version":1,"children":[')
  t.same(await store.load(), [])
  writeFileSync(file, JSON.stringify({ version: 1, children: [{ name: 'a', child_url: 'http://x', domains: [{ domain: 'NOT VALID' }] }] }))
  t.same(await store.load(), [])
  t.equal(lines.filter((l) => l.msg === 'chain registrations file corrupt: starting with none').length, 2)
})
