// A SIGHUP storm rewriting the port set while clients churn on a kept forward:
// no crash, the kept long-lived connection survives, the last file wins, and the
// connection gauge is exact (mulch-proxy raced its maps and drifted its count).
import t from 'tap'
import { reloadChurnAttack } from './tcp-forward-attacks.ts'

t.test('SIGHUP storm under connection churn', async (t) => {
  const r = await reloadChurnAttack(t, { reloads: 30, clients: 4 })
  t.ok(r.alive, 'the proxy is up and the long-lived connection still echoes')
  t.ok(r.churned > 10, `${r.churned} connections opened and closed during ${r.reloads} reloads`)
  t.ok(r.lastFileApplied, 'the last port file was applied (the toggled port is closed)')
  t.equal(r.gauge, r.open, 'the connection gauge counts exactly the open connection')
})
