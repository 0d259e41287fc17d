/**
 * @module proxy/status-page
 * The admin listener's `GET /`: one HTML page with what an operator checks during an
 * incident (SPEC §13). Rendered on the server from plain values, no external assets,
 * readable without JavaScript (a small inline script only offers a pausable 10 s
 * auto-refresh). Domain names, targets and error messages come from route files,
 * clients and upstreams: every value goes through the `html` template, which escapes
 * whatever is not already markup, and the page is served with a CSP that runs only
 * its own script. Long tables are capped (first `limit` rows, a count and `?q=`).
 */
import { createHash } from 'node:crypto'
import type { BuildInfo } from './build-info.ts'
import type { ReloadStatus } from './reload.ts'
import type { Route, RouteProblem } from './route-table.ts'
import type { ProfileRateState } from './rate-limit.ts'
import type { UpstreamErrorLog, UpstreamErrorEvent } from './upstream-errors.ts'
import type { AcmeStatus, CertStatus } from '../certs/index.ts'

/** The last failed route reload (the reloader's status only remembers the latest attempt). */
export interface ReloadFailure {
  readonly at: string
  readonly errorCount: number
  readonly errors: readonly RouteProblem[]
}

/** The last failed reload of the extra certificates file. */
export interface ExtraCertsFailure {
  readonly at: string
  readonly message: string
}

/** One worker process (today the proxy is one process). */
export interface WorkerInfo {
  readonly pid: number
  readonly role: string
  readonly uptimeS: number
  readonly rssBytes: number
  readonly inFlight: number
  readonly connections: Record<string, number>
  /** Requests answered since it started (a worker of several, SPEC §12). */
  readonly requests?: number
  /** Times its slot's process died and was replaced. */
  readonly restarts?: number
}

/** A TCP port forward, for when they exist (SPEC §11). */
export interface PortForwardInfo {
  readonly listen: string
  readonly target: string
  readonly state: string
}

/** Everything the page shows; main builds it from the running parts on each request. */
export interface StatusPageInput {
  readonly now: number
  readonly build: BuildInfo
  readonly listeners: Record<string, number>
  readonly reload: ReloadStatus
  readonly lastReloadFailure: ReloadFailure | undefined
  readonly extraCertsFailure: ExtraCertsFailure | undefined
  /** The served table (not copied: the page filters and caps it). */
  readonly routes: readonly Route[]
  readonly certificates: readonly CertStatus[]
  readonly acme: AcmeStatus
  readonly chain: { readonly mode: string } & Record<string, unknown>
  readonly rateLimits: readonly ProfileRateState[]
  readonly upstreamErrors: UpstreamErrorLog
  readonly workers: readonly WorkerInfo[]
  readonly portForwards: readonly PortForwardInfo[]
}

export interface StatusPageQuery {
  /** Substring filter over domains, targets, VMs (routes) and domains (certificates). */
  q: string
  /** Rows shown per long table. */
  limit: number
}

/** Rows per long table by default: 500 rows render in milliseconds, 100,000 do not. */
export const STATUS_PAGE_ROWS = 500
/** The longest `?q=` looked at. */
export const STATUS_PAGE_QUERY_MAX = 200
const REFRESH_S = 10
const DAY_MS = 86_400_000

/** Already-escaped markup: the only thing `html` does not escape. */
class Markup {
  readonly text: string
  constructor (text: string) { this.text = text }
  toString (): string { return this.text }
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }

/** HTML-escapes a value for text and quoted attributes. */
export function escapeHtml (value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => ESCAPES[c]!)
}

type Part = Markup | string | number | boolean | undefined | null | readonly Part[]

function part (v: Part): string {
  if (v instanceof Markup) return v.text
  if (Array.isArray(v)) return (v as readonly Part[]).map(part).join('')
  if (v === undefined || v === null || v === false) return ''
  return escapeHtml(v)
}

/** Template tag: interpolated values are escaped unless they are Markup (arrays are joined). */
function html (strings: TemplateStringsArray, ...values: Part[]): Markup {
  let out = strings[0]!
  for (let i = 0; i < values.length; i++) out += part(values[i]!) + strings[i + 1]!
  return new Markup(out)
}

const STYLE = `
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1b1f24;background:#f6f7f9}
header{background:#1f2933;color:#fff;padding:10px 20px;display:flex;flex-wrap:wrap;gap:6px 24px;align-items:baseline}
header h1{font-size:18px;margin:0}header .meta{color:#cbd2d9}
main{padding:12px 20px 40px}
section{background:#fff;border:1px solid #d9dde3;border-radius:6px;margin:12px 0;padding:10px 14px}
h2{font-size:15px;margin:2px 0 8px}h3{font-size:13px;margin:10px 0 4px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #eceef1;vertical-align:top}
th{background:#f0f2f5;font-weight:600}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.mono{font-family:ui-monospace,"SFMono-Regular",Menlo,Consolas,monospace;font-size:12px;word-break:break-all}
.ok{color:#1a7f37}.warn{color:#9a6700}.bad{color:#cf222e;font-weight:600}.muted{color:#6e7781}
.badge{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;font-weight:600;border:1px solid currentColor}
.summary{display:flex;flex-wrap:wrap;gap:8px}
.summary a{flex:1 1 150px;display:block;text-decoration:none;color:inherit;background:#fff;border:1px solid #d9dde3;border-left-width:5px;border-radius:6px;padding:6px 10px}
.summary a.ok{border-left-color:#1a7f37}.summary a.warn{border-left-color:#d4a72c}.summary a.bad{border-left-color:#cf222e}
.summary b{display:block;font-size:18px;color:#1b1f24}.summary span{font-size:12px;color:#57606a;font-weight:400}
form{margin:0 0 8px}input[type=search]{width:260px;padding:3px 6px}
#refresh{margin-left:auto}ul{margin:2px 0;padding-left:18px}
`
const SCRIPT = `(function(){var b=document.getElementById('auto'),w=document.getElementById('refresh'),k='vmfront-status-paused',t;` +
  `if(!b||!w)return;w.hidden=false;try{b.checked=sessionStorage.getItem(k)!=='1'}catch(e){}` +
  `function arm(){clearTimeout(t);if(b.checked)t=setTimeout(function(){location.reload()},${REFRESH_S * 1000})}` +
  `b.addEventListener('change',function(){try{sessionStorage.setItem(k,b.checked?'0':'1')}catch(e){}arm()});arm()})()`

const hash = (s: string): string => `'sha256-${createHash('sha256').update(s).digest('base64')}'`

/** Headers for the page: only its own inline style and script may run, nothing is loaded. */
export const STATUS_PAGE_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'content-type': 'text/html; charset=utf-8',
  'content-security-policy': `default-src 'none'; style-src ${hash(STYLE)}; script-src ${hash(SCRIPT)}; form-action 'self'; frame-ancestors 'none'; base-uri 'none'`,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store'
})

/** Reads `?q=` and `?limit=` (bounded; anything else falls back to the defaults). */
export function parseStatusPageQuery (params: URLSearchParams): StatusPageQuery {
  const q = (params.get('q') ?? '').trim().slice(0, STATUS_PAGE_QUERY_MAX)
  const n = Number(params.get('limit'))
  const limit = Number.isInteger(n) && n > 0 ? Math.min(n, 10 * STATUS_PAGE_ROWS) : STATUS_PAGE_ROWS
  return { q, limit }
}

function duration (ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000))
  if (s < 90) return `${s} s`
  if (s < 5400) return `${Math.round(s / 60)} min`
  if (s < 172_800) return `${Math.round(s / 3600)} h`
  return `${Math.round(s / 86_400)} d`
}

/** An ISO time with how long ago / until, e.g. "2026-12-03 13:20:01Z (5 min ago)". */
function when (iso: string | number | undefined, now: number): Markup {
  if (iso === undefined) return html`<span class="muted">never</span>`
  const t = typeof iso === 'number' ? iso : Date.parse(iso)
  if (!Number.isFinite(t)) return html`${iso}`
  const text = new Date(t).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z')
  const rel = t <= now ? `${duration(now - t)} ago` : `in ${duration(t - now)}`
  return html`<span title="${new Date(t).toISOString()}">${text}</span> <span class="muted">(${rel})</span>`
}

function bytes (n: number): string {
  return n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(1)} GiB` : `${(n / (1 << 20)).toFixed(1)} MiB`
}

function str (v: unknown): string | undefined {
  return typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' ? String(v) : undefined
}

type Level = 'ok' | 'warn' | 'bad'
const badge = (level: Level, text: string): Markup => html`<span class="badge ${level}">${text}</span>`

/** "Showing 500 of 100,000 (filter …)" under a capped table. */
function capNote (shown: number, matched: number, total: number, q: string, what: string): Markup {
  if (matched === total && shown === total) return html``
  const filtered = q === '' ? '' : ` matching “${q}”`
  return html`<p class="muted">Showing ${shown} of ${matched.toLocaleString('en')} ${what}${filtered}${matched !== total ? ` (${total.toLocaleString('en')} in all)` : ''}. Narrow with <span class="mono">?q=</span> or raise <span class="mono">?limit=</span>.</p>`
}

function routeState (route: Route, errors: UpstreamErrorLog, now: number): Markup {
  if (route.redirectTo !== undefined) return html`<span class="muted">redirect ${route.redirectCode}</span>`
  if (route.target === undefined) return badge('bad', 'no target')
  const e = errors.lastFor(route.domain)
  if (e === undefined) return html`<span class="ok">no upstream error seen</span>`
  const recent = now - e.last.at < 5 * 60_000
  return html`${badge(recent ? 'bad' : 'warn', `${e.last.reason} → ${e.last.status}`)} ${when(e.last.at, now)}, ${e.count} in all${e.last.message === '' ? '' : html`<br><span class="mono">${e.last.message}</span>`}`
}

function routesSection (input: StatusPageInput, query: StatusPageQuery): Markup {
  const { routes, now } = input
  const q = query.q.toLowerCase()
  const shown: Route[] = []
  let matched = 0
  for (const r of routes) {
    if (q !== '' && !r.domain.includes(q) && !(r.target?.origin.includes(q) ?? false) && !(r.vm?.toLowerCase().includes(q) ?? false) && !(r.redirectTo?.toLowerCase().includes(q) ?? false)) continue
    matched++
    if (shown.length < query.limit) shown.push(r)
  }
  const rows = shown.map((r) => html`<tr><td class="mono">${r.domain}</td><td class="mono">${r.target?.origin ?? r.redirectTo ?? ''}</td><td>${r.vm ?? ''}</td><td>${r.rateProfile ?? 'default'}${r.redirectToHttps ? html` <span class="muted">→https</span>` : ''}</td><td>${routeState(r, input.upstreamErrors, now)}</td></tr>`)
  return html`<section id="routes"><h2>Routes <span class="muted">(${routes.length.toLocaleString('en')})</span></h2>
<form method="get" action="/"><input type="search" name="q" value="${query.q}" placeholder="filter domains, targets, VMs"> <button type="submit">Filter</button>${query.q !== '' ? html` <a href="/">clear</a>` : ''}</form>
${shown.length === 0
    ? html`<p class="muted">${routes.length === 0 ? 'No routes loaded.' : 'No route matches the filter.'}</p>`
    : html`<table><thead><tr><th>domain</th><th>target</th><th>VM</th><th>rate profile</th><th>state</th></tr></thead><tbody>${rows}</tbody></table>`}
${capNote(shown.length, matched, routes.length, query.q, 'routes')}</section>`
}

function reloadSection (input: StatusPageInput): Markup {
  const { reload, now } = input
  const failed = input.lastReloadFailure
  const current = reload.result === 'failure'
    ? badge('bad', 'last reload failed: serving the previous table')
    : reload.result === 'success' ? badge('ok', 'last reload succeeded') : badge('warn', 'not loaded yet')
  const problems = (list: readonly RouteProblem[], count: number): Markup => html`<ul>${list.slice(0, 10).map((p) => html`<li><span class="mono">${p.path}</span>: ${p.message}</li>`)}</ul>${count > 10 ? html`<p class="muted">… and ${count - 10} more (all in /status and the log).</p>` : ''}`
  return html`<section id="reloads"><h2>Reloads</h2><p>${current}</p>
<table><tbody>
<tr><th>route file</th><td class="mono">${reload.file}</td></tr>
<tr><th>last attempt</th><td>${when(reload.at, now)}</td></tr>
<tr><th>last success</th><td>${when(reload.lastSuccessAt, now)}${reload.lastSuccessAt !== undefined ? html` — ${reload.routes} routes, format ${reload.format ?? ''}, sha256 <span class="mono">${(reload.sha256 ?? '').slice(0, 12)}</span>` : ''}</td></tr>
<tr><th>last failure</th><td>${failed === undefined ? html`<span class="muted">none since start</span>` : html`${when(failed.at, now)}: ${failed.errorCount} problem${failed.errorCount === 1 ? '' : 's'}${problems(failed.errors, failed.errorCount)}`}</td></tr>
<tr><th>warnings</th><td>${reload.warningCount === 0 ? html`<span class="muted">none</span>` : problems(reload.warnings, reload.warningCount)}</td></tr>
<tr><th>extra certificates</th><td>${input.extraCertsFailure === undefined ? html`<span class="muted">no failed reload since start</span>` : html`${badge('bad', 'reload failed')} ${when(input.extraCertsFailure.at, now)}: ${input.extraCertsFailure.message}`}</td></tr>
</tbody></table></section>`
}

function daysLeft (c: CertStatus, now: number): number | undefined {
  const t = Date.parse(c.notAfter)
  return Number.isFinite(t) ? Math.floor((t - now) / DAY_MS) : undefined
}

function certificatesSection (input: StatusPageInput, query: StatusPageQuery): Markup {
  const { now } = input
  const q = query.q.toLowerCase()
  const all = input.certificates
  const matching = q === '' ? all : all.filter((c) => c.domain.includes(q))
  // The most urgent first: errors, then the nearest expiry.
  const sorted = matching.map((c) => ({ c, d: daysLeft(c, now), failing: c.lastError !== undefined ? 1 : 0 }))
    .sort((a, b) => b.failing - a.failing || (a.d ?? -Infinity) - (b.d ?? -Infinity))
  const shown = sorted.slice(0, query.limit)
  const rows = shown.map(({ c, d }) => {
    const level: Level = d === undefined || d < 7 ? 'bad' : d < 21 ? 'warn' : 'ok'
    return html`<tr><td class="mono">${c.domain}</td><td>${c.source}</td><td>${c.issuer}</td><td>${when(c.notAfter, now)}</td><td class="num ${level}">${d ?? '?'}</td><td>${c.renewAt !== undefined ? when(c.renewAt, now) : ''}</td><td>${c.lastError !== undefined ? html`<span class="bad">${c.lastError}</span> ${when(c.lastErrorAt, now)}${c.retryAt !== undefined ? html`; retry ${when(c.retryAt, now)}` : ''}` : html`<span class="muted">none</span>`}</td></tr>`
  })
  const a = input.acme
  const acme = !a.enabled
    ? html`<p>ACME: <span class="muted">disabled</span> (certificates come from the extra certificates file, or the self-signed fallback).</p>`
    : html`<p>ACME: ${a.ready ? badge('ok', 'ready') : badge('bad', 'not available')}${a.failures > 0 ? html` after ${a.failures} failed attempt${a.failures === 1 ? '' : 's'}` : ''}${a.lastError !== undefined ? html` — <span class="bad">${a.lastError}</span> ${when(a.lastErrorAt, now)}` : ''}${a.retryAt !== undefined ? html`; next attempt ${when(a.retryAt, now)}` : ''}</p>`
  return html`<section id="certificates"><h2>Certificates <span class="muted">(${all.length.toLocaleString('en')})</span></h2>${acme}
${shown.length === 0
    ? html`<p class="muted">${all.length === 0 ? 'No certificate loaded or issued yet (handshakes get the self-signed fallback).' : 'No certificate matches the filter.'}</p>`
    : html`<table><thead><tr><th>domain</th><th>source</th><th>issuer</th><th>expires</th><th class="num">days left</th><th>renewal</th><th>last error</th></tr></thead><tbody>${rows}</tbody></table>`}
${capNote(shown.length, matching.length, all.length, query.q, 'certificates')}</section>`
}

function upstreamSection (input: StatusPageInput): Markup {
  const { now } = input
  const log = input.upstreamErrors
  const domains = log.byDomain(50)
  const recent = log.recent(20)
  const event = (e: UpstreamErrorEvent): Markup => html`<tr><td>${when(e.at, now)}</td><td class="mono">${e.domain}</td><td>${e.reason}</td><td class="num">${e.status}</td><td class="mono">${e.message}</td></tr>`
  return html`<section id="upstream-errors"><h2>Upstream errors <span class="muted">(${log.total().toLocaleString('en')} since start)</span></h2>
${domains.length === 0
    ? html`<p class="ok">No upstream error since start.</p>`
    : html`<h3>By domain (the most recent first)</h3><table><thead><tr><th>domain</th><th class="num">errors</th><th>last</th><th>reason</th><th class="num">status</th><th>message</th></tr></thead><tbody>${domains.map((d) => html`<tr><td class="mono">${d.domain}</td><td class="num">${d.count}</td><td>${when(d.last.at, now)}</td><td>${d.last.reason}</td><td class="num">${d.last.status}</td><td class="mono">${d.last.message}</td></tr>`)}</tbody></table>
<h3>Latest ${recent.length}</h3><table><thead><tr><th>when</th><th>domain</th><th>reason</th><th class="num">status</th><th>message</th></tr></thead><tbody>${recent.map(event)}</tbody></table>`}</section>`
}

function rateSection (input: StatusPageInput): Markup {
  const limited = input.rateLimits.filter((p) => p.limited)
  if (limited.length === 0) return html`<section id="rate-limits"><h2>Rate limits</h2><p class="muted">No rate profile limits anything.</p></section>`
  const top = limited.flatMap((p) => p.top.map((ip) => ({ profile: p.name, ...ip })))
    .sort((a, b) => (b.inFlight + b.queued) - (a.inFlight + a.queued) || b.tokensUsed - a.tokensUsed).slice(0, 20)
  return html`<section id="rate-limits"><h2>Rate limits</h2>
<table><thead><tr><th>profile</th><th class="num">tracked IPs</th><th class="num">in flight</th><th class="num">queued</th><th class="num">delayed</th><th class="num">refused (rate)</th><th class="num">refused (concurrency)</th><th class="num">evicted</th></tr></thead><tbody>${limited.map((p) => html`<tr><td>${p.name}</td><td class="num">${p.trackedIps}</td><td class="num">${p.inFlight}</td><td class="num">${p.queued}</td><td class="num">${p.delayed}</td><td class="num">${p.totals.refusedRate}</td><td class="num">${p.totals.refusedConcurrency}</td><td class="num">${p.totals.evicted}</td></tr>`)}</tbody></table>
<h3>Busiest client IPs</h3>${top.length === 0
    ? html`<p class="muted">No client IP holds rate-limit state.</p>`
    : html`<table><thead><tr><th>client IP</th><th>profile</th><th class="num">in flight</th><th class="num">queued</th><th class="num">delayed</th><th class="num">tokens used</th></tr></thead><tbody>${top.map((r) => html`<tr><td class="mono">${r.ip}</td><td>${r.profile}</td><td class="num">${r.inFlight}</td><td class="num">${r.queued}</td><td class="num">${r.delayed}</td><td class="num">${Math.round(r.tokensUsed * 10) / 10}</td></tr>`)}</tbody></table>`}</section>`
}

function sessionCell (s: Record<string, unknown>, now: number): Markup {
  const health = str(s.health) ?? 'unknown'
  const connected = s.connected === true
  const level: Level = health !== 'up' ? 'bad' : connected ? 'ok' : 'warn'
  const text = health !== 'up' ? 'down' : connected ? 'connected' : 'idle'
  return html`${badge(level, text)}${s.down_since !== undefined ? html` since ${when(str(s.down_since), now)}` : ''} <span class="muted">${str(s.sessions) ?? 0} sessions, ${str(s.streams) ?? 0} streams, ${str(s.resets) ?? 0} resets${s.last_ping_rtt_ms !== undefined ? `, rtt ${str(s.last_ping_rtt_ms) ?? ''} ms` : ''}</span>${s.last_failure !== undefined ? html`<br><span class="mono">${str(s.last_failure) ?? JSON.stringify(s.last_failure)}</span>` : ''}${s.last_reset_reason !== undefined ? html`<br><span class="muted">last reset: ${str(s.last_reset_reason)}</span>` : ''}`
}

function chainSection (input: StatusPageInput): Markup {
  const c = input.chain
  const { now } = input
  if (c.mode === 'parent') {
    const children = Array.isArray(c.children) ? c.children as Array<Record<string, unknown>> : []
    return html`<section id="chain"><h2>Chain: parent <span class="muted">(${children.length} children)</span></h2><p>API <span class="mono">${str(c.api) ?? ''}</span></p>
${children.length === 0
    ? html`<p class="muted">No child registered.</p>`
    : html`<table><thead><tr><th>child</th><th>url</th><th>domains</th><th>lease expires</th><th>session</th></tr></thead><tbody>${children.map((ch) => {
      const domains = Array.isArray(ch.domains) ? ch.domains.map(String) : []
      return html`<tr><td>${str(ch.name)}</td><td class="mono">${str(ch.url)}</td><td class="mono">${domains.slice(0, 5).join(', ')}${domains.length > 5 ? ` … (${domains.length})` : ''}</td><td>${when(str(ch.lease_expires_at), now)}</td><td>${sessionCell((ch.session ?? {}) as Record<string, unknown>, now)}</td></tr>`
    })}</tbody></table>`}</section>`
  }
  if (c.mode === 'child') {
    const refused = Array.isArray(c.refused_domains) ? c.refused_domains.length : 0
    return html`<section id="chain"><h2>Chain: child <span class="muted">${str(c.name) ?? ''}</span></h2><table><tbody>
<tr><th>parent</th><td class="mono">${str(c.parent_url)}</td></tr>
<tr><th>registered</th><td>${c.registered === true ? badge('ok', 'yes') : badge('bad', 'no')} last ${when(str(c.last_registered_at), now)}${c.next_attempt_at !== undefined ? html`, next attempt ${when(str(c.next_attempt_at), now)}` : ''}</td></tr>
<tr><th>failures</th><td>${str(c.failures) ?? 0}${c.last_error !== undefined ? html` — <span class="bad">${str(c.last_error) ?? JSON.stringify(c.last_error)}</span>` : ''}</td></tr>
<tr><th>refused domains</th><td>${refused === 0 ? html`<span class="muted">none</span>` : html`<span class="bad">${refused}</span> <span class="mono">${JSON.stringify(c.refused_domains).slice(0, 500)}</span>`}</td></tr>
<tr><th>parent sessions</th><td>${str(c.h2_sessions) ?? 0} HTTP/2 sessions</td></tr>
</tbody></table></section>`
  }
  return html`<section id="chain"><h2>Chain</h2><p class="muted">Not chained (chain.mode = ${c.mode}).</p></section>`
}

function workersSection (input: StatusPageInput): Markup {
  return html`<section id="workers"><h2>Workers <span class="muted">(${input.workers.length})</span></h2>
<table><thead><tr><th>pid</th><th>role</th><th>uptime</th><th class="num">memory (RSS)</th><th class="num">in flight</th><th>open connections</th></tr></thead><tbody>${input.workers.map((w) => html`<tr><td class="num">${w.pid}</td><td>${w.role}</td><td>${duration(w.uptimeS * 1000)}</td><td class="num">${bytes(w.rssBytes)}</td><td class="num">${w.inFlight}</td><td>${Object.entries(w.connections).map(([k, v]) => `${k} ${v}`).join(', ')}</td></tr>`)}</tbody></table></section>`
}

function portForwardsSection (input: StatusPageInput): Markup {
  const list = input.portForwards
  return html`<section id="port-forwards"><h2>Port forwards</h2>${list.length === 0
    ? html`<p class="muted">None configured.</p>`
    : html`<table><thead><tr><th>listen</th><th>target</th><th>state</th></tr></thead><tbody>${list.map((p) => html`<tr><td class="mono">${p.listen}</td><td class="mono">${p.target}</td><td>${p.state}</td></tr>`)}</tbody></table>`}</section>`
}

function summary (input: StatusPageInput): Markup {
  const { now } = input
  const tile = (href: string, level: Level, value: string, label: string): Markup => html`<a href="${href}" class="${level}"><b>${value}</b><span>${label}</span></a>`
  const reload = input.reload
  const soon = input.certificates.filter((c) => (daysLeft(c, now) ?? -1) < 14 && c.source !== 'self-signed').length
  const certErrors = input.certificates.filter((c) => c.lastError !== undefined).length
  const acmeDown = input.acme.enabled && !input.acme.ready
  let minDays: number | undefined
  for (const c of input.certificates) {
    const d = c.source === 'self-signed' ? undefined : daysLeft(c, now)
    if (d !== undefined && (minDays === undefined || d < minDays)) minDays = d
  }
  const recentErrors = input.upstreamErrors.recent().filter((e) => now - e.at < 5 * 60_000).length
  const limitedIps = input.rateLimits.reduce((n, p) => n + (p.limited ? p.trackedIps : 0), 0)
  const chain = input.chain
  const children = Array.isArray(chain.children) ? chain.children as Array<Record<string, unknown>> : []
  const down = children.filter((ch) => (ch.session as Record<string, unknown> | undefined)?.health !== 'up').length
  const chainTile = chain.mode === 'parent'
    ? tile('#chain', down > 0 ? 'bad' : 'ok', `${children.length - down}/${children.length}`, 'chain children up')
    : chain.mode === 'child'
      ? tile('#chain', chain.registered === true ? 'ok' : 'bad', chain.registered === true ? 'registered' : 'not registered', 'with the chain parent')
      : tile('#chain', 'ok', 'off', `chain (mode ${chain.mode})`)
  return html`<div class="summary">
${tile('#routes', reload.result === 'success' ? 'ok' : 'bad', input.routes.length.toLocaleString('en'), 'routes')}
${tile('#reloads', reload.result === 'success' ? 'ok' : 'bad', reload.result === 'success' ? 'ok' : reload.result === 'never' ? 'not loaded' : 'failed', `last reload${reload.at !== undefined ? `, ${duration(now - Date.parse(reload.at))} ago` : ''}`)}
${tile('#certificates', certErrors > 0 || acmeDown ? 'bad' : soon > 0 ? 'warn' : 'ok', certErrors > 0 ? `${certErrors} failing` : soon > 0 ? `${soon} expiring` : acmeDown ? 'ACME down' : `${input.certificates.length} ok`, `certificates${minDays === undefined ? '' : `, fewest days left: ${minDays}`}`)}
${tile('#upstream-errors', recentErrors > 0 ? 'bad' : 'ok', String(recentErrors), 'upstream errors in the last 5 min')}
${tile('#rate-limits', 'ok', String(limitedIps), 'client IPs with rate-limit state')}
${chainTile}
</div>`
}

/** Renders the page. Cost: one pass over the routes (filter), the rest bounded by `limit`. */
export function renderStatusPage (input: StatusPageInput, query: StatusPageQuery = { q: '', limit: STATUS_PAGE_ROWS }): string {
  const { build, now } = input
  const listeners = Object.entries(input.listeners).map(([k, v]) => `${k} :${v}`).join(', ')
  const page = html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>vmfront status</title><style>${new Markup(STYLE)}</style></head>
<body><header><h1>vmfront status</h1><span class="meta">version ${build.version}${build.commit !== '' ? ` (${build.commit.slice(0, 10)})` : ''}, Node ${build.node}</span><span class="meta">listeners: ${listeners}</span><span class="meta">generated ${when(now, now)}</span>
<label id="refresh" hidden><input type="checkbox" id="auto" checked> auto-refresh every ${REFRESH_S} s</label></header>
<main>${summary(input)}
${routesSection(input, query)}
${upstreamSection(input)}
${certificatesSection(input, query)}
${reloadSection(input)}
${chainSection(input)}
${rateSection(input)}
${workersSection(input)}
${portForwardsSection(input)}
<p class="muted">Machine-readable: <a href="/status">/status</a> (JSON), <a href="/metrics">/metrics</a> (Prometheus).</p>
</main><script>${new Markup(SCRIPT)}</script></body></html>
`
  return page.text
}
