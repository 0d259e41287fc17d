// Issue 9 point 5, in the library: storage that cannot be written (a full disk, a file where a
// folder should be) or read never makes start() fail. Stored and user certificates and the
// fallback keep serving, ACME retries with exponential backoff and says why in words, no order is
// placed meanwhile, and everything resumes once the storage works again. No CA is needed: nothing
// reaches the directory URL before the account key is kept.
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { createCertManager, type CertManagerOptions, type Storage } from '../../certs/index.ts'
import { createMemoryStorage } from '../../certs/memory-storage.ts'
import { issuerKeyFromUrl, storageKeys } from '../../certs/storage.ts'
import { issueTestCert, pollUntil } from '../helpers/pebble.ts'
import { handshake, recordEvents, startTlsServer, tmpDir } from './harness.ts'

// Port 9 (discard) on loopback: refused at once, so an order that does run fails fast.
const DIRECTORY = 'https://127.0.0.1:9/dir'
const keys = storageKeys(issuerKeyFromUrl(DIRECTORY))
const INTERNALS = /undefined|Cannot read|ENOSPC|ENOTDIR|EISDIR|\bat \w+ \(/

interface TimedLine { at: number, level: string, msg: string, fields: Record<string, unknown> }

function timedLogger (): { lines: TimedLine[], logger: NonNullable<CertManagerOptions['logger']> } {
  const lines: TimedLine[] = []
  const at = (level: string) => (msg: string, fields?: Record<string, unknown>): void => { lines.push({ at: Date.now(), level, msg, fields: fields ?? {} }) }
  return { lines, logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') } }
}

/** What Node's fs rejects with on a full disk. */
function noSpace (): NodeJS.ErrnoException {
  return Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' })
}

t.test('a full disk: start succeeds, stored certificates serve, ACME backs off, says why, and resumes', async (t) => {
  const mem = createMemoryStorage()
  const leaf = issueTestCert({ dnsNames: ['stored.test'] })
  await mem.store(keys.siteCert('stored.test'), leaf.certPem)
  await mem.store(keys.siteKey('stored.test'), leaf.keyPem)
  const disk = { full: true }
  const storage: Storage = {
    load: mem.load,
    list: mem.list,
    delete: mem.delete,
    async store (key, data, options) {
      if (disk.full) throw noSpace()
      await mem.store(key, data, options)
    }
  }
  const { lines, logger } = timedLogger()
  const m = createCertManager({
    storageDir: tmpDir(t), storage, policy: () => true, logger,
    acme: { enabled: true, directoryUrl: DIRECTORY, email: '' },
    backoffBaseMs: 200, backoffMaxMs: 800, maintenanceIntervalMs: 600_000
  })
  t.teardown(() => m.stop())
  const ev = recordEvents(m)
  await m.start()
  t.pass('start() resolved although the account key cannot be written')

  const want = `cannot write the ACME account key to ${keys.accountKey}: no space left on device`
  const status = m.acmeStatus()
  t.equal(status.ready, false)
  t.equal(status.lastError, want, '/status says why, in words')
  t.ok(status.retryAt !== undefined && Date.parse(status.retryAt) > Date.now() - 1000, 'and when it tries again')
  t.notMatch(JSON.stringify(status), INTERNALS, 'no codes, no JavaScript internals')
  const logged = lines.find((l) => l.level === 'error' && l.msg.startsWith('ACME unavailable'))
  t.equal(logged?.fields.reason, want, 'the log line says why')

  const port = await startTlsServer(t, m)
  t.equal((await handshake(port, 'stored.test')).serial, m.status().find((r) => r.domain === 'stored.test')?.serial.replace(/^(00)+/, ''), 'the stored certificate is served')
  t.match((await handshake(port, 'new.test')).subject, /vmfront fallback/, 'a new name gets the fallback')
  const err = await m.ensure('new.test').then(() => undefined, (e: unknown) => e as Error & { code: string })
  t.equal(err?.code, 'CERTS_ACME_UNAVAILABLE')
  t.match(err?.message, /^ACME is not available, no certificate for new\.test yet: cannot write the ACME account key to .*: no space left on device; next attempt at /)

  // Exponential backoff: each retry waits longer (base 200 ms, doubling, jittered 50-100 %, cap 800 ms).
  await pollUntil(() => lines.filter((l) => l.msg.startsWith('ACME unavailable')).length >= 4, 10_000, 'four failed attempts')
  const attempts = lines.filter((l) => l.msg.startsWith('ACME unavailable')).slice(0, 4)
  const delays = attempts.map((l) => Date.parse(String(l.fields.retryAt)) - l.at)
  t.same(attempts.map((l) => l.fields.failures), [1, 2, 3, 4], 'failures counted')
  t.ok(delays[0] <= delays[1] && delays[1] <= delays[2] && delays[2] >= 400 && delays.every((d) => d <= 800), `delays grow and stay capped: ${delays.join(', ')} ms`)
  t.same(ev.orders, [], 'no order while ACME is unavailable, not even from handshakes')

  disk.full = false
  await pollUntil(() => m.acmeStatus().ready, 5000, 'ACME ready once the disk has room')
  t.ok(lines.some((l) => l.msg === 'ACME available again'), 'recovery logged')
  t.ok(mem.entries.has(keys.accountKey), 'the account key is kept')
  t.same(m.acmeStatus(), { enabled: true, ready: true, failures: 0 }, 'status clean again')
  await t.rejects(m.ensure('new.test'), { code: 'CERTS_ORDER_FAILED' }, 'orders run again (this CA is unreachable)')
})

t.test('a file where the acme folder should be (works without root): same story, with file storage', async (t) => {
  const dir = tmpDir(t)
  writeFileSync(join(dir, 'acme'), 'not a folder')
  const { lines, logger } = timedLogger()
  const m = createCertManager({
    storageDir: dir, policy: () => true, logger,
    acme: { enabled: true, directoryUrl: DIRECTORY, email: '' },
    backoffBaseMs: 200, backoffMaxMs: 400, maintenanceIntervalMs: 600_000
  })
  t.teardown(() => m.stop())
  await m.start()
  const status = m.acmeStatus()
  t.equal(status.ready, false)
  t.equal(status.lastError, `cannot read the ACME account key at ${join(dir, keys.accountKey)}: not a directory`)
  t.notMatch(JSON.stringify(status), INTERNALS)
  rmSync(join(dir, 'acme'))
  await pollUntil(() => m.acmeStatus().ready, 5000, 'ACME ready once the file is gone')
  t.ok(lines.some((l) => l.msg === 'ACME available again'))
})

t.test('an unreadable stored certificate: the others serve, ACME waits and says which one', async (t) => {
  const dir = tmpDir(t)
  const site = (domain: string): string => join(dir, keys.sitesPrefix, domain)
  const good = issueTestCert({ dnsNames: ['good.test'] })
  mkdirSync(site('good.test'), { recursive: true })
  writeFileSync(join(site('good.test'), 'cert.pem'), good.certPem)
  writeFileSync(join(site('good.test'), 'key.pem'), good.keyPem)
  mkdirSync(join(site('bad.test'), 'cert.pem'), { recursive: true }) // a folder: reading it fails
  writeFileSync(join(site('bad.test'), 'key.pem'), 'k')
  const m = createCertManager({
    storageDir: dir, policy: () => true,
    acme: { enabled: true, directoryUrl: DIRECTORY, email: '' },
    backoffBaseMs: 200, backoffMaxMs: 400, maintenanceIntervalMs: 600_000
  })
  t.teardown(() => m.stop())
  await m.start()
  t.equal(m.status().find((r) => r.domain === 'good.test')?.source, 'acme', 'the readable certificate serves')
  const status = m.acmeStatus()
  t.equal(status.ready, false)
  t.equal(status.lastError, `cannot read the stored certificate of bad.test at ${join(site('bad.test'), 'cert.pem')}: illegal operation on a directory`)
  t.notMatch(JSON.stringify(status), INTERNALS)
  t.same(readdirSync(site('bad.test')).sort(), ['cert.pem', 'key.pem'], 'an unreadable certificate is not moved aside as corrupt')
})
