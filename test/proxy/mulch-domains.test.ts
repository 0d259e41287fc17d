// Mulch's domains file as mulchd and a mulch-proxy parent really write it (SPEC §10):
// every field of common.Domain, Chained entries forwarded to their TargetURL, names
// mulchd accepts that are not DNS names. Parsed, then served by a real proxy process.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { request } from 'undici'
import { parseRouteFileText, type Route } from '../../proxy/route-table.ts'
import { ROOT, startProxyProcess } from '../helpers/proxy-process.ts'
import { startBackend } from '../helpers/backend.ts'

const FIXTURE = join(ROOT, 'test/fixtures/mulch/mulch-proxy-domains.db')

/** One entry as mulchd's json.Encoder writes common.Domain: every field, in struct order. */
function mulchDomain (fields: Record<string, unknown>): Record<string, unknown> {
  return { Name: '', VMName: '', RedirectTo: '', RedirectCode: 0, DestinationHost: '', DestinationPort: 0, RedirectToHTTPS: false, RateProfile: '', TargetURL: '', Chained: false, ...fields }
}

function byDomain (routes: readonly Route[]): Map<string, Route> {
  return new Map(routes.map((r) => [r.domain, r]))
}

t.test('the real mulchd domains file loads, every entry as mulch-proxy reads it', async (t) => {
  const result = parseRouteFileText(readFileSync(FIXTURE, 'utf8'))
  if (!result.ok) {
    t.fail(`rejected: ${JSON.stringify(result.errors)}`)
    return
  }
  t.equal(result.table.format, 'mulch-legacy')
  t.same(result.warnings, [], 'no warning for a plain mulchd file')
  const routes = byDomain(result.table.routes)
  t.equal(routes.size, 4)
  t.equal(routes.get('api.example.com')?.target?.origin, 'http://10.104.0.13:80')
  t.equal(routes.get('app.example.com')?.target?.origin, 'http://10.104.0.12:8080')
  t.equal(routes.get('app.example.com')?.redirectToHttps, true)
  t.equal(routes.get('app.example.com')?.rateProfile, 'default')
  t.equal(routes.get('old.example.com')?.redirectTo, 'app.example.com')
  t.equal(routes.get('old.example.com')?.redirectCode, 302, 'RedirectCode 0 = mulch-proxy\'s default, 302')
  t.equal(routes.get('www.app.example.com')?.redirectCode, 301)
  t.notOk(routes.get('api.example.com')?.mulchChained, 'a VM entry is not chained')
})

t.test('Chained entries forward to their TargetURL; TargetURL of a VM entry is ignored as mulch-proxy does', async (t) => {
  const doc = {
    'c1.example.test': mulchDomain({ Name: 'c1.example.test', TargetURL: 'http://10.0.0.2:80', Chained: true }),
    'c2.example.test': mulchDomain({ Name: 'c2.example.test', TargetURL: 'https://forward.example.test', Chained: true, RateProfile: 'default' }),
    'vm.example.test': mulchDomain({ Name: 'vm.example.test', DestinationHost: '10.1.0.5', DestinationPort: 80, TargetURL: 'http://stale.example.test:1' })
  }
  const result = parseRouteFileText(JSON.stringify(doc) + '\n')
  if (!result.ok) {
    t.fail(`rejected: ${JSON.stringify(result.errors)}`)
    return
  }
  const routes = byDomain(result.table.routes)
  t.equal(routes.get('c1.example.test')?.target?.origin, 'http://10.0.0.2:80')
  t.equal(routes.get('c1.example.test')?.mulchChained, true, 'marked for the chain layer (Mulch-PSK in parent mode)')
  t.equal(routes.get('c2.example.test')?.target?.origin, 'https://forward.example.test:443', 'an https:// child URL is kept')
  t.equal(routes.get('vm.example.test')?.target?.origin, 'http://10.1.0.5:80', 'DestinationHost:DestinationPort wins over a stale TargetURL')
  t.notOk(routes.get('vm.example.test')?.mulchChained)
})

t.test('names mulchd accepts are served (with a warning), names no Host header can carry are not', async (t) => {
  const ok = parseRouteFileText(JSON.stringify({
    'my_app.example.test': mulchDomain({ Name: 'my_app.example.test', DestinationHost: '10.1.0.5', DestinationPort: 80 }),
    'old_site.test': mulchDomain({ Name: 'old_site.test', RedirectTo: 'my_app.example.test', RedirectCode: 301 }),
    'odd.test': mulchDomain({ Name: 'odd.test', DestinationHost: '10.1.0.6', DestinationPort: 80, RateProfile: 'my profile' })
  }))
  if (!ok.ok) {
    t.fail(`rejected: ${JSON.stringify(ok.errors)}`)
    return
  }
  t.equal(ok.table.routes.length, 3)
  t.same(ok.warnings.map((w) => w.path).sort(), ['$["my_app.example.test"].Name', '$["odd.test"].RateProfile', '$["old_site.test"].Name'], 'each name that is not a DNS name is warned about')
  t.ok(ok.warnings.some((w) => w.path === '$["my_app.example.test"].Name' && /never given an ACME certificate/.test(w.message)), 'the warning says no certificate will be ordered')
  t.equal(byDomain(ok.table.routes).get('odd.test')?.rateProfile, undefined, 'an impossible profile name falls back to default')

  const bad = parseRouteFileText(JSON.stringify({
    'a b.test': mulchDomain({ Name: 'a b.test', DestinationHost: '10.1.0.5', DestinationPort: 80 }),
    'good.test': mulchDomain({ Name: 'good.test', DestinationHost: '10.1.0.5', DestinationPort: 80 })
  }))
  t.notOk(bad.ok, 'the whole file is refused: all or nothing')
  if (!bad.ok) t.match(bad.errors, [{ path: '$["a b.test"].Name', message: /invalid label/ }])
})

t.test('malformed Chained entries are refused with their path', async (t) => {
  const cases: Array<[Record<string, unknown>, string, RegExp]> = [
    [mulchDomain({ Name: 'c.test', Chained: true }), '$["c.test"].TargetURL', /required when Chained is true/],
    [mulchDomain({ Name: 'c.test', Chained: 'yes', TargetURL: 'http://x:80' }), '$["c.test"].Chained', /true or false/],
    [mulchDomain({ Name: 'c.test', Chained: true, TargetURL: 7 }), '$["c.test"].TargetURL', /string/],
    [mulchDomain({ Name: 'c.test', Chained: true, TargetURL: 'ftp://x' }), '$["c.test"].TargetURL', /http:\/\/ or https:\/\//],
    [mulchDomain({ Name: 'c.test', Chained: true, TargetURL: 'http://x:80/prefix' }), '$["c.test"].TargetURL', /origin, not a path/],
    [mulchDomain({ Name: 'c.test', Unknown: 1, DestinationHost: '10.0.0.1', DestinationPort: 80 }), '$["c.test"].Unknown', /not a known key of the Mulch format/]
  ]
  for (const [entry, path, message] of cases) {
    const r = parseRouteFileText(JSON.stringify({ 'c.test': entry }))
    t.notOk(r.ok, path)
    if (!r.ok) t.match(r.errors[0], { path, message })
  }
})

t.test('a real proxy process serves the real fixture: VM domains, redirects, RedirectToHTTPS, a Chained entry, a "_" name', async (t) => {
  const vm = await startBackend(t)
  const child = await startBackend(t)
  // The real file, with its destinations pointed at the test backend: every other field and key as mulchd wrote it.
  const doc = JSON.parse(readFileSync(FIXTURE, 'utf8')) as Record<string, Record<string, unknown>>
  for (const entry of Object.values(doc)) {
    if (entry.DestinationHost !== '') Object.assign(entry, { DestinationHost: '127.0.0.1', DestinationPort: vm.port })
  }
  doc['c1.example.test'] = mulchDomain({ Name: 'c1.example.test', TargetURL: child.origin, Chained: true })
  doc['my_app.example.test'] = mulchDomain({ Name: 'my_app.example.test', VMName: 'my_app', DestinationHost: '127.0.0.1', DestinationPort: vm.port })
  const psk = 'mulch-parent-psk-0123456789'
  const proxy = await startProxyProcess(t, {
    routes: JSON.stringify(doc) + '\n',
    listen: '[listen]\nhttp = "127.0.0.1:0"\nhttps = "127.0.0.1:0"\nadmin = "127.0.0.1:0"',
    // A Mulch parent: its Chained entries carry the PSK its mulch-proxy children check.
    toml: `[chain]\nmode = "parent"\nparent_url = "http://127.0.0.1:0"\npsk = "${psk}"`
  })
  const loaded = proxy.logs.find((l) => l.msg === 'routes loaded')
  t.equal(loaded?.routes, 6, 'all six entries loaded at start')
  const get = async (host: string, path = '/p?q=1'): Promise<{ status: number, location: unknown, body: string }> => {
    const res = await request(`http://127.0.0.1:${proxy.ports.http}${path}`, { headers: { host } })
    return { status: res.statusCode, location: res.headers.location, body: await res.body.text() }
  }

  const api = await get('api.example.com')
  t.equal(api.status, 200, 'api.example.com reaches its VM')
  t.equal((JSON.parse(api.body) as { headers: Record<string, string> }).headers.host, 'api.example.com', 'Host preserved')

  const app = await get('app.example.com')
  t.equal(app.status, 308, 'RedirectToHTTPS: plain HTTP goes to https')
  t.equal(app.location, `https://app.example.com:${proxy.ports.https}/p?q=1`)

  const old = await get('old.example.com')
  t.equal(old.status, 302, 'RedirectCode 0: mulch-proxy\'s default 302')
  t.equal(old.location, 'http://app.example.com/p?q=1')

  const www = await get('www.app.example.com')
  t.equal(www.status, 301)
  t.equal(www.location, 'http://app.example.com/p?q=1')

  const chained = await get('c1.example.test', '/c?x=2')
  t.equal(chained.status, 200, 'a Chained entry is forwarded to its TargetURL')
  t.equal(child.requests.length, 1, 'the child got it, not the VM')
  t.equal(child.requests[0].headers.host, 'c1.example.test', 'Host preserved towards the child')
  t.equal(child.requests[0].url, '/c?x=2')
  t.equal(child.requests[0].headers['mulch-psk'], psk, 'Mulch-PSK sent to the chained child, as mulch-proxy does')
  t.equal(child.requests[0].headers['x-real-ip'], '127.0.0.1', 'with the client identity')
  t.equal(vm.requests.filter((r) => r.headers['mulch-psk'] !== undefined).length, 0, 'never to a VM')

  const underscore = await get('my_app.example.test')
  t.equal(underscore.status, 200, 'a name with "_" is served')
  t.equal((await get('unknown.example.com')).status, 404)
})
