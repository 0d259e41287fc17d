// An ACME directory that does not answer (refused, untrusted TLS) is reported in words an
// operator acts on — "cannot reach the ACME server URL: connection refused" — in the order's
// error, /status and the log, never acme-client's "Cannot read properties of undefined".
import t from 'tap'
import https from 'node:https'
import { createCertManager, type CertManagerOptions } from '../../certs/index.ts'
import { createMemoryStorage } from '../../certs/memory-storage.ts'
import { issueTestCert } from '../helpers/pebble.ts'
import { tmpDir } from './harness.ts'

function quietLogger (): { errors: string[], logger: NonNullable<CertManagerOptions['logger']> } {
  const errors: string[] = []
  const none = (): void => {}
  return { errors, logger: { debug: none, info: none, warn: none, error: (msg, fields) => { errors.push(`${msg} ${fields?.err instanceof Error ? fields.err.message : JSON.stringify(fields)}`) } } }
}

async function orderError (t: { teardown (fn: () => unknown): void, ok (v: unknown, m: string): void }, directoryUrl: string): Promise<string> {
  const { errors, logger } = quietLogger()
  const m = createCertManager({
    storageDir: tmpDir(t), storage: createMemoryStorage(), policy: () => true, logger,
    acme: { enabled: true, directoryUrl, email: '' },
    backoffBaseMs: 60_000, backoffMaxMs: 60_000, maintenanceIntervalMs: 600_000
  })
  t.teardown(() => m.stop())
  await m.start()
  const failure = await m.ensure('site.test').then(() => undefined, (err: Error) => err)
  t.ok(failure !== undefined, 'the order fails')
  const row = m.status().find((c) => c.domain === 'site.test')
  t.ok(errors.some((e) => e.includes(String(row?.lastError))), 'the log says the same')
  t.ok(failure?.message.includes(String(row?.lastError)), 'so does the error')
  return String(row?.lastError)
}

t.test('connection refused', async (t) => {
  const message = await orderError(t, 'https://127.0.0.1:9/directory')
  t.equal(message, 'ordering a certificate for site.test: cannot reach the ACME server https://127.0.0.1:9/directory: connection refused')
})

t.test('a directory whose TLS certificate is not trusted', async (t) => {
  const cert = issueTestCert({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] })
  const server = https.createServer({ key: cert.keyPem, cert: cert.certPem }, (_req, res) => { res.end('{}') })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  const url = `https://127.0.0.1:${(server.address() as { port: number }).port}/directory`
  const message = await orderError(t, url)
  t.match(message, new RegExp(`^ordering a certificate for site\\.test: cannot reach the ACME server ${url.replace(/[.]/g, '\\.')}: its TLS certificate .*not trusted \\(acme\\.ca_file names an extra CA\\)$`))
  t.notMatch(message, /undefined|Cannot read/)
})
