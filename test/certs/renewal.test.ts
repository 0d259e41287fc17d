// Background renewal against a real Pebble issuing 6-second certificates: renewal with no
// handshake, failure while Pebble is down (old certificate kept, failure reported, recovery),
// and no renewal once the policy stops allowing the domain.
import t from 'tap'
import { pollUntil } from '../helpers/pebble.ts'
import { handshake, newManager, recordEvents, startAcmeEnv, startTlsServer, statusSerial, tmpDir } from './harness.ts'

const VALIDITY = 6
const env = await startAcmeEnv(t, { validitySeconds: VALIDITY })

t.test('renews in the background when a third of the lifetime remains, with no handshake', async (t) => {
  const m = newManager(t, env, { storageDir: tmpDir(t) })
  const ev = recordEvents(m)
  await m.start()
  await m.ensure('renew.test')
  const first = m.status().find((r) => r.domain === 'renew.test')
  if (first === undefined) throw new Error('no status row')
  const lifetime = Date.parse(first.notAfter) - Date.parse(first.notBefore)
  t.ok(lifetime <= VALIDITY * 1000, `lifetime read from the certificate (${lifetime} ms)`)
  const renewAt = Date.parse(first.renewAt ?? '')
  t.ok(renewAt <= Date.parse(first.notAfter) - lifetime / 3 && renewAt >= Date.parse(first.notAfter) - lifetime / 3 - lifetime * 0.05 - 1,
    'renewAt = notAfter - lifetime/3, minus at most 5% jitter')

  const renewal = await ev.waitForOrder((e) => e.domain === 'renew.test' && e.reason === 'renewal', 15_000)
  t.equal(renewal.result, 'success', String(renewal.error))
  t.ok(Date.now() >= renewAt, 'not before the planned time')
  const second = m.status().find((r) => r.domain === 'renew.test')
  t.not(second?.serial, first.serial, 'a new certificate (new serial)')
  t.ok(ev.certificates.filter((c) => c.domain === 'renew.test').length >= 2, 'certificate events for issue and renewal')
  const port = await startTlsServer(t, m)
  const h = await handshake(port, 'renew.test', { ca: await env.pebble.rootPem() })
  t.equal(h.serial, statusSerial(m, 'renew.test'), 'the renewed certificate is served')
  t.equal(h.authorized, true)
})

t.test('with Pebble down, renewal fails, the old certificate keeps serving, and it recovers', async (t) => {
  const m = newManager(t, env, { storageDir: tmpDir(t) })
  const ev = recordEvents(m)
  await m.start()
  const port = await startTlsServer(t, m)
  await m.ensure('down.test')
  const oldRoot = await env.pebble.rootPem()
  const oldSerial = statusSerial(m, 'down.test')
  await env.pebble.stopPebble()
  let restarted = false
  t.teardown(async () => { if (!restarted) await env.pebble.start() })

  const failure = await ev.waitForOrder((e) => e.domain === 'down.test' && e.result === 'failure', 15_000)
  t.equal(failure.error && (failure.error as { code?: string }).code, 'CERTS_ORDER_FAILED')
  const h = await handshake(port, 'down.test', { ca: oldRoot })
  t.equal(h.serial, oldSerial, 'the current certificate is still served after a failed renewal')
  const row = m.status().find((r) => r.domain === 'down.test')
  t.equal(row?.source, 'acme')
  t.match(row?.lastError, /down\.test/, 'status shows the last error')
  t.ok(row?.retryAt !== undefined || ev.orders.some((e) => e.result === 'failure'), 'backoff is visible')
  // Retries back off: a few failures, not a tight loop (base 200 ms, cap 1 s).
  await ev.waitForOrder((e) => e.domain === 'down.test' && e.result === 'failure' && ev.orders.filter((o) => o.result === 'failure').length >= 2, 10_000)
  const failures = ev.orders.filter((e) => e.result === 'failure')
  t.ok(failures.length < 20, `backed off (${failures.length} failures)`)

  await env.pebble.start()
  restarted = true
  const success = await ev.waitForOrder((e) => e.domain === 'down.test' && e.result === 'success' && ev.orders.indexOf(e) > ev.orders.indexOf(failure), 15_000)
  t.ok(success, 'renewal succeeds once Pebble is back (new CA, account registered again)')
  const newRoot = await env.pebble.rootPem()
  const h2 = await handshake(port, 'down.test', { ca: newRoot })
  t.not(h2.serial, oldSerial)
  t.equal(h2.authorized, true, 'chains to the restarted Pebble root')
  t.equal(m.status().find((r) => r.domain === 'down.test')?.lastError, undefined, 'error cleared')
})

t.test('a certificate the policy no longer allows is not renewed', async (t) => {
  let allowed = true
  const policyCalls: number[] = []
  const m = newManager(t, env, {
    storageDir: tmpDir(t),
    policy: (d) => { if (d === 'gone.test') policyCalls.push(Date.now()); return allowed }
  })
  const ev = recordEvents(m)
  await m.start()
  await m.ensure('gone.test')
  const serial = statusSerial(m, 'gone.test')
  allowed = false
  const renewAt = Date.parse(m.status().find((r) => r.domain === 'gone.test')?.renewAt ?? '')
  // Wait until the loop has looked at the domain at least twice after it became due.
  await pollUntil(() => policyCalls.filter((c) => c > renewAt).length >= 2, 15_000, 'maintenance ticks after renewAt')
  t.same(ev.orders.map((e) => e.reason), ['ensure'], 'only the first order, no renewal')
  t.equal(statusSerial(m, 'gone.test'), serial, 'the current certificate stays until it expires')
  await pollUntil(() => ev.certificates.some((c) => c.removed), 15_000, 'expired certificate dropped')
  t.same(ev.certificates.map((c) => [c.domain, c.source, c.removed]), [['gone.test', 'acme', false], ['gone.test', 'acme', true]], 'removal event once expired')
  t.equal(m.status().find((r) => r.domain === 'gone.test'), undefined, 'no longer listed')
  t.same(ev.orders.map((e) => e.reason), ['ensure'], 'still no order')
})
