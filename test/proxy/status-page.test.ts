// The status page rendered in process: every attacker-influenced value escaped,
// long tables capped and filterable, a 100,000-route table rendered fast, and the
// upstream-error ring bounded.
import t from 'tap'
import { Registry } from 'prom-client'
import { renderStatusPage, parseStatusPageQuery, STATUS_PAGE_ROWS, type StatusPageInput } from '../../proxy/status-page.ts'
import { createUpstreamErrorLog } from '../../proxy/upstream-errors.ts'
import { createAdminApp } from '../../proxy/admin.ts'
import type { Route } from '../../proxy/route-table.ts'
import type { ReloadStatus } from '../../proxy/reload.ts'

const NOW = Date.parse('2026-12-03T12:00:00Z')
const EVIL = '<script>alert(1)</script>"\'&'

function route (domain: string, port = 8080): Route {
  return { domain, target: { host: '10.0.0.1', port, origin: `http://10.0.0.1:${port}` }, redirectCode: 308, redirectToHttps: false, vm: `vm-${domain}` }
}

function input (over: Partial<StatusPageInput> = {}): StatusPageInput {
  const reload: ReloadStatus = { result: 'success', at: '2026-12-03T11:59:00Z', lastSuccessAt: '2026-12-03T11:59:00Z', routes: 2, file: '/etc/vmfront/routes.json', format: 'v1', sha256: 'ab'.repeat(32), errors: [], warnings: [], errorCount: 0, warningCount: 0 }
  return {
    now: NOW,
    build: { version: '1.2.3', commit: '0123456789abcdef0123456789abcdef01234567', node: 'v24.0.0' },
    listeners: { http: 80, admin: 9180 },
    reload,
    lastReloadFailure: undefined,
    extraCertsFailure: undefined,
    routes: [route('ok.test'), route('down.test', 9)],
    certificates: [],
    acme: { enabled: false, ready: false, failures: 0 },
    chain: { mode: 'none' },
    rateLimits: [],
    upstreamErrors: createUpstreamErrorLog({ now: () => NOW - 1000 }),
    workers: [{ pid: 4242, role: 'proxy (single process)', uptimeS: 3600, rssBytes: 80 << 20, inFlight: 3, connections: { http: 5 } }],
    portForwards: [],
    ...over
  }
}

t.test('every attacker-influenced value is escaped', async (t) => {
  const errors = createUpstreamErrorLog({ now: () => NOW - 1000 })
  errors.record(EVIL, 'refused', 502, new Error(`connect ECONNREFUSED ${EVIL}`))
  const html = renderStatusPage(input({
    routes: [{ ...route(EVIL), vm: EVIL, rateProfile: EVIL }],
    upstreamErrors: errors,
    certificates: [{ domain: EVIL, source: 'acme', issuer: EVIL, serial: '01', notBefore: '2026-11-01T00:00:00Z', notAfter: '2026-12-13T12:00:00Z', lastError: EVIL, lastErrorAt: '2026-12-03T11:00:00Z' }],
    acme: { enabled: true, ready: false, failures: 2, lastError: EVIL, lastErrorAt: '2026-12-03T11:00:00Z' },
    lastReloadFailure: { at: '2026-12-03T11:00:00Z', errorCount: 1, errors: [{ path: EVIL, message: EVIL }] },
    extraCertsFailure: { at: '2026-12-03T11:00:00Z', message: EVIL },
    chain: { mode: 'parent', api: EVIL, children: [{ name: EVIL, url: EVIL, domains: [EVIL], lease_expires_at: EVIL, session: { health: 'down', down_since: EVIL, last_failure: EVIL } }] },
    rateLimits: [{ name: EVIL, limited: true, trackedIps: 1, inFlight: 0, queued: 0, delayed: 0, totals: { queued: 0, delayed: 0, refusedConcurrency: 0, refusedRate: 1, aborted: 0, queueFull: 0, evicted: 0 }, top: [{ ip: EVIL, inFlight: 0, queued: 0, delayed: 0, tokensUsed: 3 }] }],
    portForwards: [{ listen: EVIL, target: EVIL, state: EVIL }]
  }), { q: EVIL, limit: 500 })
  t.equal(html.split('<script').length - 1, 1, 'the only <script> is the page\'s own')
  t.notMatch(html, /alert\(1\)<\/script>/, 'no injected script survives')
  t.notMatch(html, /"'&/, 'no raw quote breaks out of an attribute')
  t.ok(html.split('&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;').length - 1 >= 12, 'the values are shown, escaped, in every section')
  t.match(html, 'value="&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;"', 'the filter echoes the query escaped')
})

t.test('the page shows the facts an operator checks', async (t) => {
  const errors = createUpstreamErrorLog({ now: () => NOW - 30_000 })
  errors.record('down.test', 'refused', 502, new Error('connect ECONNREFUSED 10.0.0.1:9'))
  const html = renderStatusPage(input({
    upstreamErrors: errors,
    certificates: [{ domain: 'ok.test', source: 'extra', issuer: 'Test CA', serial: '01', notBefore: '2026-11-01T00:00:00Z', notAfter: '2026-12-13T12:00:00Z' }],
    lastReloadFailure: { at: '2026-12-03T10:00:00Z', errorCount: 1, errors: [{ path: '$.routes[0].target', message: 'expected host:port' }] }
  }))
  t.match(html, /Routes <span class="muted">\(2\)<\/span>/)
  t.match(html, /refused → 502/, 'the failing route shows its last error')
  t.match(html, 'connect ECONNREFUSED 10.0.0.1:9')
  t.match(html, 'no upstream error seen', 'the healthy route says so')
  t.match(html, /<td class="num warn">10<\/td>/, 'days left, amber under 21')
  t.match(html, '$.routes[0].target</span>: expected host:port', 'the last failed reload and why')
  t.match(html, '2026-12-03 11:59:00Z', 'the last successful reload')
  t.match(html, '4242', 'the worker pid')
  t.match(html, 'None configured.', 'port forwards')
  t.match(html, 'Not chained')
})

t.test('long tables: capped, counted, filtered; 100,000 routes render fast', async (t) => {
  const routes = Array.from({ length: 100_000 }, (_, i) => route(`vm${i}.example.test`))
  const started = performance.now()
  const html = renderStatusPage(input({ routes }))
  const ms = performance.now() - started
  t.ok(ms < 500, `rendered in ${ms.toFixed(0)} ms`)
  t.ok(html.length < 600_000, `page of ${html.length} bytes`)
  t.equal(html.split('<tr><td class="mono">vm').length - 1, STATUS_PAGE_ROWS, 'first 500 rows only')
  t.match(html, 'Showing 500 of 100,000 routes')
  t.match(html, /Routes <span class="muted">\(100,000\)<\/span>/)

  const filtered = renderStatusPage(input({ routes }), parseStatusPageQuery(new URLSearchParams('q=VM4242.')))
  t.equal(filtered.split('<tr><td class="mono">vm').length - 1, 1, 'the filter finds one route (case-insensitive)')
  t.match(filtered, 'vm4242.example.test')
  t.match(filtered, 'Showing 1 of 1 routes matching “VM4242.” (100,000 in all)')
  const certificates = routes.map((r, i) => ({ domain: r.domain, source: 'acme' as const, issuer: 'CA', serial: String(i), notBefore: '2026-11-01T00:00:00Z', notAfter: new Date(NOW + (i % 90) * 86_400_000 + 3_600_000).toISOString() }))
  const t0 = performance.now()
  const withCerts = renderStatusPage(input({ routes, certificates }))
  const certMs = performance.now() - t0
  t.ok(certMs < 1500, `100,000 certificates rendered in ${certMs.toFixed(0)} ms`)
  t.match(withCerts, 'Showing 500 of 100,000 certificates')
  t.match(withCerts, /<td class="num bad">0<\/td>/, 'the nearest expiry first')
  t.match(withCerts, 'fewest days left: 0')
  t.same(parseStatusPageQuery(new URLSearchParams(`limit=999999&q=${'x'.repeat(1000)}`)), { q: 'x'.repeat(200), limit: 5000 }, 'query bounded')
  t.same(parseStatusPageQuery(new URLSearchParams('limit=-1')), { q: '', limit: STATUS_PAGE_ROWS })
})

t.test('upstream error log: bounded ring, newest first, per-domain counts, bounded domains', async (t) => {
  let now = 0
  const log = createUpstreamErrorLog({ capacity: 3, maxDomains: 2, now: () => ++now })
  log.record('a.test', 'refused', 502)
  log.record('b.test', 'timeout', 504, new Error('x'.repeat(1000)))
  log.record('a.test', 'reset', 502, new Error('socket hang up'))
  log.record('c.test', 'refused', 502)
  t.equal(log.total(), 4)
  t.same(log.recent().map((e) => e.domain), ['c.test', 'a.test', 'b.test'], 'three slots, newest first')
  t.equal(log.recent()[2]!.message.length, 301, 'messages cut')
  t.same(log.byDomain().map((d) => [d.domain, d.count, d.last.reason]), [['c.test', 1, 'refused'], ['a.test', 2, 'reset']], 'the least recently failing domain forgotten')
  t.equal(log.lastFor('b.test'), undefined)
  t.equal(log.lastFor('a.test')?.last.message, 'socket hang up')
})

t.test('admin GET / serves the page with a CSP that only runs its own script', async (t) => {
  const app = createAdminApp({ registry: new Registry(), healthy: () => true, status: () => ({}), page: () => input(), dump: async () => '' })
  const res = await app.request('/?q=ok')
  t.equal(res.status, 200)
  t.equal(res.headers.get('content-type'), 'text/html; charset=utf-8')
  const csp = res.headers.get('content-security-policy') ?? ''
  t.match(csp, /default-src 'none'/)
  t.match(csp, /script-src 'sha256-[A-Za-z0-9+/]+='/)
  t.notMatch(csp, /unsafe-inline/)
  const body = await res.text()
  t.match(body, 'ok.test')
  t.notMatch(body, '<td class="mono">down.test', 'filtered by ?q=')
  t.equal((await app.request('/status')).headers.get('content-type'), 'application/json')
})

t.test('chain (parent and child) and ACME states', async (t) => {
  const parent = renderStatusPage(input({
    chain: {
      mode: 'parent',
      api: 'http://10.0.0.9:8443',
      children: [
        { name: 'host-a', url: 'http://10.0.0.2:80', domains: ['a1.test', 'a2.test'], lease_expires_at: '2026-12-03T12:01:00Z', session: { health: 'up', connected: true, sessions: 1, streams: 4, resets: 0, last_ping_rtt_ms: 2 } },
        { name: 'host-b', url: 'http://10.0.0.3:80', domains: ['b.test'], lease_expires_at: '2026-12-03T12:01:00Z', session: { health: 'down', connected: false, sessions: 0, streams: 0, resets: 3, down_since: '2026-12-03T11:58:00Z', last_failure: 'ping timeout' } }
      ]
    },
    acme: { enabled: true, ready: false, failures: 3, lastError: 'cannot reach the ACME directory https://acme.test/dir: connection refused', lastErrorAt: '2026-12-03T11:59:00Z', retryAt: '2026-12-03T12:05:00Z' }
  }))
  t.match(parent, 'Chain: parent <span class="muted">(2 children)</span>')
  t.match(parent, /host-a[^]*?<span class="badge ok">connected<\/span>[^]*?1 sessions, 4 streams, 0 resets, rtt 2 ms/)
  t.match(parent, /host-b[^]*?<span class="badge bad">down<\/span> since [^]*?\(2 min ago\)[^]*?ping timeout/)
  t.match(parent, /<b>1\/2<\/b><span>chain children up<\/span>/, 'the summary counts the children up')
  t.match(parent, /<span class="badge bad">not available<\/span> after 3 failed attempts — <span class="bad">cannot reach the ACME directory https:\/\/acme\.test\/dir: connection refused<\/span>/)
  t.match(parent, /next attempt [^]*?\(in 5 min\)/)

  const child = renderStatusPage(input({ chain: { mode: 'child', name: 'host-a', parent_url: 'http://10.0.0.9:8443', registered: false, failures: 2, last_error: 'parent answered 401', refused_domains: [], h2_sessions: 0, next_attempt_at: '2026-12-03T12:00:30Z' } }))
  t.match(child, 'Chain: child <span class="muted">host-a</span>')
  t.match(child, /<span class="badge bad">no<\/span>/)
  t.match(child, 'parent answered 401')
  t.match(child, /<b>not registered<\/b>/)
})
