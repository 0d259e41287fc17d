// Storage: one contract suite run against file and memory storage, the sanitising key builder,
// and what only file storage promises (atomic writes, 0600 files, 0700 directories, no escape).
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { createFileStorage, writeFileAtomic } from '../../certs/file-storage.ts'
import { createMemoryStorage } from '../../certs/memory-storage.ts'
import { issuerKeyFromUrl, safeKeyPart, storageKeys, type Storage } from '../../certs/storage.ts'
import { tmpDir } from './harness.ts'

const implementations: Array<[string, (t: Parameters<typeof tmpDir>[0]) => Storage]> = [
  ['file', (t) => createFileStorage(join(tmpDir(t), 'data'))],
  ['memory', () => createMemoryStorage()]
]

for (const [name, make] of implementations) {
  t.test(`${name} storage honours the Storage contract`, async (t) => {
    const s = make(t)
    t.equal(await s.load('certs/x/a.test/cert.pem'), undefined, 'missing key loads undefined')
    t.same(await s.list('certs/x'), [], 'missing prefix lists nothing')
    await s.store('certs/x/b.test/cert.pem', 'B')
    await s.store('certs/x/a.test/cert.pem', 'A1')
    await s.store('certs/x/a.test/key.pem', 'K', { secret: true })
    await s.store('certs/x/a.test/cert.pem', 'A2')
    t.equal((await s.load('certs/x/a.test/cert.pem'))?.toString(), 'A2', 'store overwrites')
    t.same(await s.list('certs/x'), ['a.test', 'b.test'], 'direct children, sorted')
    t.same(await s.list('certs/x/a.test'), ['cert.pem', 'key.pem'])
    await s.delete('certs/x/a.test/key.pem')
    await s.delete('certs/x/a.test/key.pem')
    t.equal(await s.load('certs/x/a.test/key.pem'), undefined, 'deleted (twice, no error)')
  })
}

t.test('the key builder sanitises names and rejects traversal', async (t) => {
  const ok: Array<[string, string]> = [['App.Example.COM', 'app.example.com'], ['*.example.com', 'wildcard_.example.com'], ['xn--bcher-kva.example', 'xn--bcher-kva.example'], ['a_b-c.test', 'a_b-c.test']]
  for (const [input, want] of ok) t.equal(safeKeyPart(input), want, input)
  for (const bad of ['', '..', '../etc', 'a/../../b', 'a/b', 'a\\b', '.hidden', 'a..b', 'a\0b', 'x'.repeat(254), '*', 'a b', '%2e%2e']) {
    t.throws(() => safeKeyPart(bad), { code: 'CERTS_STORAGE_KEY_INVALID' }, JSON.stringify(bad))
  }
  const keys = storageKeys('acme-v02.api.letsencrypt.org-directory')
  t.equal(keys.siteCert('App.test'), 'certs/acme-v02.api.letsencrypt.org-directory/app.test/cert.pem')
  t.equal(keys.accountKey, 'acme/acme-v02.api.letsencrypt.org-directory/account.key')
  t.throws(() => keys.siteKey('../../../etc/passwd'), { code: 'CERTS_STORAGE_KEY_INVALID' })
  t.throws(() => storageKeys('..'), { code: 'CERTS_STORAGE_KEY_INVALID' })
  t.equal(issuerKeyFromUrl('https://acme-staging-v02.api.letsencrypt.org/directory'), 'acme-staging-v02.api.letsencrypt.org-directory')
  t.equal(issuerKeyFromUrl('https://127.0.0.1:14000/dir'), '127.0.0.1-14000-dir')
  t.not(issuerKeyFromUrl('https://acme-v02.api.letsencrypt.org/directory'), issuerKeyFromUrl('https://acme-staging-v02.api.letsencrypt.org/directory'), 'staging and production never share files')
})

t.test('file storage: modes, atomic replacement, and no escape from the root', async (t) => {
  const root = join(tmpDir(t), 'data')
  const s = createFileStorage(root)
  await s.store('certs/i/a.test/key.pem', 'secret', { secret: true })
  await s.store('certs/i/a.test/cert.pem', 'public')
  t.equal(statSync(join(root, 'certs/i/a.test/key.pem')).mode & 0o777, 0o600)
  t.equal(statSync(join(root, 'certs/i/a.test/cert.pem')).mode & 0o777, 0o600)
  for (const d of ['', 'certs', 'certs/i', 'certs/i/a.test']) t.equal(statSync(join(root, d)).mode & 0o777, 0o700, `${d || 'root'} is 0700`)
  for (const key of ['../outside', 'certs/../../outside', '/etc/passwd', 'certs//x', 'certs/./x', 'a\\..\\b']) {
    await t.rejects(s.store(key, 'x'), { code: 'CERTS_STORAGE_KEY_INVALID' }, key)
  }
  t.notOk(existsSync(join(root, '..', 'outside')))

  // Atomic replacement: the file is swapped by rename, so an open reader keeps the old inode and
  // no temporary file is left behind.
  const file = join(root, 'certs/i/a.test/cert.pem')
  const inodeBefore = statSync(file).ino
  await s.store('certs/i/a.test/cert.pem', 'public v2')
  t.not(statSync(file).ino, inodeBefore, 'replaced by rename, not rewritten in place')
  t.equal(readFileSync(file, 'utf8'), 'public v2')
  t.same(readdirSync(join(root, 'certs/i/a.test')).sort(), ['cert.pem', 'key.pem'], 'no temporary files left')

  // A failed write (target is a directory) leaves the old content and no temporary file.
  mkdirSync(join(root, 'certs/i/b.test/cert.pem'), { recursive: true })
  await t.rejects(writeFileAtomic(join(root, 'certs/i/b.test/cert.pem'), 'x'))
  t.same(readdirSync(join(root, 'certs/i/b.test')), ['cert.pem'], 'temporary file cleaned up after a failed rename')

  // Hidden names (our temporary files) are never listed.
  writeFileSync(join(root, 'certs/i/.abc.tmp'), '')
  t.same(await s.list('certs/i'), ['a.test', 'b.test'])
})
