// SPEC §14: renewal happens on time for any lifetime. With the production maintenance interval
// (5 min), Pebble's 6-second certificates must be renewed when a third of their lifetime remains
// (about 2 s), round after round: the loop sleeps until the next certificate is due, and wakes
// earlier when an order issues a certificate due sooner than its current plan.
import t from 'tap'
import type { CertManagerOptions } from '../../certs/index.ts'
import { pollUntil } from '../helpers/pebble.ts'
import { newManager, recordEvents, startAcmeEnv, tmpDir } from './harness.ts'

const VALIDITY_S = 6
/** How late a renewal may start after its planned time (timer and event-loop slack on a busy 2-core machine). */
const MAX_LATENESS_MS = 1000

interface TimedLine { at: number, msg: string, fields: Record<string, unknown> }

function timedLogger (): { lines: TimedLine[], logger: NonNullable<CertManagerOptions['logger']> } {
  const lines: TimedLine[] = []
  const at = (msg: string, fields?: Record<string, unknown>): void => { lines.push({ at: Date.now(), msg, fields: fields ?? {} }) }
  return { lines, logger: { debug: at, info: at, warn: at, error: at } }
}

const env = await startAcmeEnv(t, { validitySeconds: VALIDITY_S })

t.test('short-lived certificates renew when a third of their lifetime remains, with the default 5-minute interval', async (t) => {
  const { lines, logger } = timedLogger()
  const m = newManager(t, env, { storageDir: tmpDir(t), maintenanceIntervalMs: 300_000, logger })
  const ev = recordEvents(m)
  await m.start()
  // Issued after start: the loop is asleep (first pass planned 10 s out) and must be re-armed.
  await m.ensure('ontime.test')
  const latenesses: number[] = []
  for (let round = 1; round <= 2; round++) {
    const row = m.status().find((r) => r.domain === 'ontime.test')
    const renewAt = Date.parse(row?.renewAt ?? '')
    const lifetime = Date.parse(row?.notAfter ?? '') - Date.parse(row?.notBefore ?? '')
    t.ok(lifetime > 0 && lifetime <= VALIDITY_S * 1000, `round ${round}: a ${lifetime} ms certificate`)
    const from = lines.length
    let started: TimedLine | undefined
    await pollUntil(() => {
      started = lines.slice(from).find((l) => l.msg === 'ordering certificate' && l.fields.reason === 'renewal')
      return started !== undefined
    }, lifetime + 2000, `renewal round ${round}`)
    const lateness = (started?.at ?? 0) - renewAt
    latenesses.push(lateness)
    t.ok(lateness >= 0, `round ${round}: not before the planned time (${lateness} ms)`)
    t.ok(lateness <= MAX_LATENESS_MS, `round ${round}: started ${lateness} ms after the renewal point (at most ${MAX_LATENESS_MS})`)
    const done = await ev.waitForOrder((e) => e.reason === 'renewal' && ev.orders.filter((o) => o.reason === 'renewal').length === round, 10_000)
    t.equal(done.result, 'success', `round ${round}: renewed (${String(done.error ?? 'no error')})`)
    t.not(m.status().find((r) => r.domain === 'ontime.test')?.serial, row?.serial, `round ${round}: a new certificate`)
  }
  t.comment(`renewal lateness after the renewal point: ${latenesses.map((l) => `${l} ms`).join(', ')}`)
})
