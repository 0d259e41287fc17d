// examples/grafana-dashboard.json works against real data: a real Prometheus (Debian
// package prometheus) scrapes a real chain parent and child every second after traffic
// that exercises every panel (2xx, 404, a 502 from a down VM, a 429 from a rate profile,
// a chained request, a chain session reset, a refused registration, an HTTP/2 rapid reset,
// a user certificate), and every panel query, with the dashboard's variables substituted,
// returns data. The alert rules are loaded too: each evaluates without error and carries a
// severity and its annotations. Also checks the dashboard's structure (importable JSON).
import t from 'tap'
import tls from 'node:tls'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { request } from 'undici'
import { ROOT, routesDoc, metricValue, tempDir } from '../helpers/proxy-process.ts'
import { startBackend, deadPort } from '../helpers/backend.ts'
import { issueTestCert, pollUntil } from '../helpers/pebble.ts'
import { api, startChild, startParent } from '../chain/chain-helpers.ts'
import { rapidReset } from '../adversarial/h2-attacks.ts'
import { startPrometheus } from './prometheus-server.ts'

interface Target { refId: string, expr: string, legendFormat?: string, datasource?: { type?: string, uid?: string } }
interface Panel { id: number, type: string, title?: string, datasource?: { type?: string, uid?: string }, gridPos?: Record<string, number>, targets?: Target[], panels?: Panel[] }
interface Variable { name: string, type: string, query: string | { query: string }, datasource?: { uid?: string } }
interface Dashboard { title: string, uid: string, schemaVersion: number, panels: Panel[], templating: { list: Variable[] } }

const dashboard = JSON.parse(readFileSync(join(ROOT, 'examples/grafana-dashboard.json'), 'utf8')) as Dashboard
const allPanels = (panels: Panel[]): Panel[] => panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])])
const panels = allPanels(dashboard.panels)
const queries = panels.flatMap((p) => (p.targets ?? []).map((target) => ({ panel: `${p.title ?? '?'} [${target.refId}]`, expr: target.expr, legend: target.legendFormat ?? '' })))

// The values Grafana would substitute with "All" selected and a 1 s scrape interval.
const VARIABLES: Record<string, string> = { job: 'vmfront', instance: '.*', domain: '.*', __rate_interval: '10s' }
function substitute (text: string): string {
  return text.replace(/\$(\w+)|\$\{(\w+)\}/g, (whole, a?: string, b?: string) => {
    const name = a ?? b ?? ''
    // ${1} is label_replace's capture group, not a dashboard variable (Grafana leaves unknown names alone).
    return name in VARIABLES ? VARIABLES[name] : whole
  })
}

t.test('the dashboard JSON is importable: titles, unique ids, the datasource variable everywhere', async (t) => {
  t.equal(typeof dashboard.title, 'string')
  t.equal(dashboard.uid, 'vmfront-proxy')
  t.ok(dashboard.schemaVersion >= 36, 'a Grafana 10/11 schema')
  const ids = panels.map((p) => p.id)
  t.equal(new Set(ids).size, ids.length, 'panel ids are unique')
  const ds = dashboard.templating.list.find((v) => v.name === 'datasource')
  t.same(ds && { type: ds.type, query: ds.query }, { type: 'datasource', query: 'prometheus' }, 'a Prometheus datasource variable')
  for (const p of panels) {
    t.ok(typeof p.title === 'string' && p.title.length > 0, `panel ${p.id} has a title`)
    t.ok(p.gridPos !== undefined && p.gridPos.w > 0 && p.gridPos.h > 0, `${p.title ?? p.id} has a grid position`)
    if (p.type === 'row') continue
    t.same(p.datasource, { type: 'prometheus', uid: '${datasource}' }, `${p.title ?? p.id} uses the datasource variable`)
    t.ok((p.targets ?? []).length > 0, `${p.title ?? p.id} has queries`)
    for (const target of p.targets ?? []) t.same(target.datasource, { type: 'prometheus', uid: '${datasource}' }, `${p.title ?? p.id} [${target.refId}] uses the datasource variable`)
  }
  for (const v of dashboard.templating.list.filter((v) => v.type === 'query')) t.equal(v.datasource?.uid, '${datasource}', `variable ${v.name} uses the datasource variable`)
  // The panels the operator needs (SPEC §13), found by the metric they query.
  for (const metric of ['vmfront_http_requests_total', 'vmfront_http_request_duration_seconds_bucket', 'vmfront_upstream_errors_total', 'vmfront_http_requests_in_flight', 'vmfront_certificate_expiry_timestamp_seconds', 'vmfront_route_reloads_total', 'vmfront_config_last_reload_successful', 'vmfront_chain_children', 'vmfront_chain_session_resets_total', 'vmfront_rate_limited_total', 'vmfront_http2_abusive_connections_total']) {
    t.ok(queries.some((q) => q.expr.includes(metric)), `a panel queries ${metric}`)
  }
})

t.test('a real Prometheus that scraped vmfront answers every panel query with data', async (t) => {
  // --- vmfront: a chain parent (http, https with a user certificate, rate profile) and a child
  const dir = tempDir(t)
  const ca = issueTestCert({ isCa: true, commonName: 'vmfront dashboard test CA' })
  const leaf = issueTestCert({ issuer: ca, dnsNames: ['own.test'] })
  writeFileSync(join(dir, 'own.crt'), leaf.certPem)
  writeFileSync(join(dir, 'own.key'), leaf.keyPem, { mode: 0o600 })
  writeFileSync(join(dir, 'extra.toml'), `[[certificate]]\ndomains = ["own.test"]\ncertfile = ${JSON.stringify(join(dir, 'own.crt'))}\nkeyfile = ${JSON.stringify(join(dir, 'own.key'))}\n`)
  const vm = await startBackend(t, (_req, res) => { res.end('ok') })
  const down = await deadPort()
  const parent = await startParent(t, {
    routes: routesDoc([
      { domain: 'own.test', target: vm.origin },
      { domain: 'down.test', target: `http://127.0.0.1:${down}` },
      { domain: 'limited.test', target: vm.origin, rate_profile: 'strict' }
    ]),
    listen: '[listen]\nhttp = "127.0.0.1:0"\nhttps = "127.0.0.1:0"\nadmin = "127.0.0.1:0"',
    toml: `[tls]\nextra_certs_file = ${JSON.stringify(join(dir, 'extra.toml'))}\n[log]\naccess = false\n[[rate_profile]]\nname = "strict"\nlimit_burst_requests = 1\nlimit_requests_per_second = 0.01\n`
  })
  const child = await startChild(t, { apiPort: parent.apiPort, name: 'c1', routes: routesDoc([{ domain: 'app.test', target: vm.origin }]) })
  t.teardown(() => { if (child.child.exitCode === null) child.child.kill('SIGCONT') })
  await parent.waitForLog((l) => l.msg === 'chain child registered' && l.child === 'c1')

  // --- Prometheus, scraping both admin listeners every second, with the alert rules
  const prometheus = await startPrometheus(t, {
    targets: [`127.0.0.1:${parent.ports.admin}`, `127.0.0.1:${child.ports.admin}`],
    ruleFiles: [join(ROOT, 'examples/prometheus-alerts.yml')]
  })

  // --- traffic
  const get = async (host: string): Promise<number> => {
    const res = await request(`http://127.0.0.1:${parent.ports.http}/`, { headers: { host } })
    await res.body.dump()
    return res.statusCode
  }
  t.equal(await get('own.test'), 200, '2xx')
  t.equal(await get('nowhere.test'), 404, '404 for a host outside the route table')
  t.equal(await get('down.test'), 502, '502 from a down VM')
  t.same([await get('limited.test'), await get('limited.test')], [200, 429], '429 from the rate profile')
  t.equal(await get('app.test'), 200, 'a chained domain through the child')
  const conflict = await api(parent.api, 'register', { name: 'c2', child_url: 'http://127.0.0.1:1', domains: [{ domain: 'app.test' }] })
  t.equal(conflict.status, 409, 'a conflicting registration is refused')
  // A frozen child misses the parent's keepalive pings (300 ms): the session is reset.
  const from = parent.logs.length
  child.child.kill('SIGSTOP')
  await parent.waitForLog((l) => l.msg === 'chain session reset' && l.child === 'c1', 10_000, from)
  child.child.kill('SIGCONT')
  const authorized = await new Promise<boolean>((resolve, reject) => {
    const s = tls.connect({ port: parent.ports.https, host: '127.0.0.1', servername: 'own.test', ca: ca.certPem }, () => { resolve(s.authorized); s.destroy() })
    s.on('error', reject)
  })
  t.ok(authorized, 'the user certificate is served')
  const attack = await rapidReset({ port: parent.ports.https, servername: 'own.test' }, { streams: 1000, boundMs: 5000 })
  t.teardown(attack.release)
  t.ok((metricValue(await parent.metrics(), 'vmfront_http2_abusive_connections_total{reason="rapid_reset"}') ?? 0) >= 1, 'the rapid reset connection was counted')

  // --- every panel query returns data (bounded poll: a few 1 s scrapes are needed for rates)
  const pending = new Map(queries.map((q) => [q.panel, substitute(q.expr)]))
  const errors = new Map<string, string>()
  const results = new Map<string, Array<{ metric: Record<string, string> }>>()
  try {
    await pollUntil(async () => {
      for (const [panel, expr] of pending) {
        try {
          const data = await prometheus.api('query', { query: expr }) as { result: Array<{ metric: Record<string, string> }> }
          errors.delete(panel)
          if (data.result.length > 0) { pending.delete(panel); results.set(panel, data.result) }
        } catch (err) {
          errors.set(panel, (err as Error).message)
        }
      }
      return pending.size === 0
    }, 15_000, 'every panel query to return data')
  } catch { /* reported below, query by query */ }
  for (const q of queries) {
    t.notOk(pending.has(q.panel), `${q.panel} returns data: ${substitute(q.expr)}${errors.has(q.panel) ? ` (${errors.get(q.panel) ?? ''})` : ''}`)
    // Every label the legend names is set on every series (catches a by() or label_replace() that lost it).
    for (const [, label] of q.legend.matchAll(/\{\{\s*(\w+)\s*\}\}/g)) {
      const series = results.get(q.panel) ?? []
      t.ok(series.every((s) => (s.metric[label] ?? '') !== ''), `${q.panel}: every series has the legend's label ${label} (${JSON.stringify(series.map((s) => s.metric))})`)
    }
  }

  // --- the variables' label_values() queries list what was scraped
  for (const v of dashboard.templating.list.filter((v) => v.type === 'query')) {
    const query = typeof v.query === 'string' ? v.query : v.query.query
    const m = /^label_values\((.+), (\w+)\)$/.exec(substitute(query))
    t.ok(m, `variable ${v.name} is a label_values() query`)
    if (m === null) continue
    const values = await prometheus.api(`label/${m[2]}/values`, { 'match[]': m[1] }) as string[]
    const expected = { job: ['vmfront'], instance: [`127.0.0.1:${parent.ports.admin}`, `127.0.0.1:${child.ports.admin}`], domain: ['own.test', 'down.test', 'limited.test', 'app.test', '_unknown'] }[v.name] ?? []
    t.ok(expected.length > 0, `expected values known for ${v.name}`)
    for (const value of expected) t.ok(values.includes(value), `$${v.name} offers ${value} (got ${values.join(', ')})`)
  }

  // --- the alert rules, as Prometheus loaded and evaluated them on this data
  type Rule = { name: string, type: string, health: string, lastError?: string, labels: Record<string, string>, annotations: Record<string, string>, duration: number, lastEvaluation: string }
  let rules: Rule[] = []
  await pollUntil(async () => {
    const data = await prometheus.api('rules') as { groups: Array<{ rules: Rule[] }> }
    rules = data.groups.flatMap((g) => g.rules)
    return rules.length > 0 && rules.every((r) => !r.lastEvaluation.startsWith('0001'))
  }, 10_000, 'every alert rule to be evaluated')
  t.ok(rules.length >= 10, `${rules.length} alert rules loaded`)
  for (const r of rules) {
    t.equal(r.type, 'alerting', `${r.name} is an alerting rule`)
    t.equal(r.health, 'ok', `${r.name} evaluates without error${r.lastError === undefined || r.lastError === '' ? '' : `: ${r.lastError}`}`)
    t.match(r.labels.severity, /^(critical|warning|info)$/, `${r.name} has a severity`)
    t.ok((r.annotations.summary ?? '').length > 0 && (r.annotations.description ?? '').length > 0, `${r.name} has a summary and a description`)
  }
  const firing = await prometheus.api('alerts') as { alerts: Array<{ labels: Record<string, string>, state: string }> }
  t.notOk(firing.alerts.some((a) => a.labels.alertname === 'VmfrontDown' || a.labels.alertname === 'VmfrontMetricsAbsent'), 'no "proxy down" alert while both proxies are scraped')
})
