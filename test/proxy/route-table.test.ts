// The route-file validator: many malformed inputs, each reported at its JSON path.
import t from 'tap'
import { parseRouteFileText, parseRouteTable, serializeRouteTable, hostnameProblem, parseTarget } from '../../proxy/route-table.ts'

const v1 = (routes: unknown): unknown => ({ version: 1, routes })

t.test('malformed route files are refused with the JSON path of each problem', async (t) => {
  const cases: Array<[string, unknown, string, RegExp?]> = [
    ['not an object', [], '$'],
    ['string document', 'routes', '$'],
    ['missing version', { routes: [] }, '$.version'],
    ['wrong version', { version: 2, routes: [] }, '$.version'],
    ['version as string', { version: '1', routes: [] }, '$.version'],
    ['routes not an array', { version: 1, routes: {} }, '$.routes'],
    ['missing routes', { version: 1 }, '$.routes'],
    ['unknown top-level key', { version: 1, routes: [], extra: true }, '$.extra'],
    ['route not an object', v1(['app.test']), '$.routes[0]'],
    ['missing domain', v1([{ target: 'http://10.0.0.1:80' }]), '$.routes[0].domain'],
    ['domain wrong type', v1([{ domain: 42, target: 'http://10.0.0.1:80' }]), '$.routes[0].domain'],
    ['upper-case domain', v1([{ domain: 'App.test', target: 'http://10.0.0.1:80' }]), '$.routes[0].domain', /lower-case/],
    ['domain with space', v1([{ domain: 'a b.test', target: 'http://10.0.0.1:80' }]), '$.routes[0].domain'],
    ['domain with leading hyphen label', v1([{ domain: '-a.test', target: 'http://10.0.0.1:80' }]), '$.routes[0].domain'],
    ['domain with empty label', v1([{ domain: 'a..test', target: 'http://10.0.0.1:80' }]), '$.routes[0].domain'],
    ['label over 63', v1([{ domain: `${'a'.repeat(64)}.test`, target: 'http://10.0.0.1:80' }]), '$.routes[0].domain'],
    ['name over 253', v1([{ domain: `${'a.'.repeat(127)}test`, target: 'http://10.0.0.1:80' }]), '$.routes[0].domain'],
    ['unicode domain', v1([{ domain: 'café.test', target: 'http://10.0.0.1:80' }]), '$.routes[0].domain', /punycode/],
    ['IP as domain', v1([{ domain: '10.0.0.1', target: 'http://10.0.0.1:80' }]), '$.routes[0].domain'],
    ['underscore', v1([{ domain: 'a_b.test', target: 'http://10.0.0.1:80' }]), '$.routes[0].domain'],
    ['duplicate domain', v1([{ domain: 'a.test', target: 'http://10.0.0.1:80' }, { domain: 'a.test', target: 'http://10.0.0.2:80' }]), '$.routes[1].domain', /duplicate/],
    ['duplicate after trailing dot', v1([{ domain: 'a.test', target: 'http://10.0.0.1:80' }, { domain: 'a.test.', target: 'http://10.0.0.2:80' }]), '$.routes[1].domain'],
    ['neither target nor redirect', v1([{ domain: 'a.test' }]), '$.routes[0]'],
    ['both target and redirect', v1([{ domain: 'a.test', target: 'http://10.0.0.1:80', redirect_to: 'b.test' }]), '$.routes[0]'],
    ['https target', v1([{ domain: 'a.test', target: 'https://10.0.0.1:443' }]), '$.routes[0].target'],
    ['target with path', v1([{ domain: 'a.test', target: 'http://10.0.0.1:80/x' }]), '$.routes[0].target'],
    ['target not a URL', v1([{ domain: 'a.test', target: '10.0.0.1:80' }]), '$.routes[0].target'],
    ['target port out of range', v1([{ domain: 'a.test', target: 'http://10.0.0.1:70000' }]), '$.routes[0].target'],
    ['target wrong type', v1([{ domain: 'a.test', target: 8080 }]), '$.routes[0].target'],
    ['redirect code 303', v1([{ domain: 'a.test', redirect_to: 'b.test', redirect_code: 303 }]), '$.routes[0].redirect_code'],
    ['redirect code as string', v1([{ domain: 'a.test', redirect_to: 'b.test', redirect_code: '301' }]), '$.routes[0].redirect_code'],
    ['redirect_to invalid', v1([{ domain: 'a.test', redirect_to: 'http://b.test/' }]), '$.routes[0].redirect_to'],
    ['redirect_to_https not boolean', v1([{ domain: 'a.test', target: 'http://10.0.0.1:80', redirect_to_https: 'yes' }]), '$.routes[0].redirect_to_https'],
    ['rate_profile wrong type', v1([{ domain: 'a.test', target: 'http://10.0.0.1:80', rate_profile: 1 }]), '$.routes[0].rate_profile'],
    ['vm wrong type', v1([{ domain: 'a.test', target: 'http://10.0.0.1:80', vm: {} }]), '$.routes[0].vm'],
    ['unknown route key', v1([{ domain: 'a.test', target: 'http://10.0.0.1:80', weight: 3 }]), '$.routes[0].weight'],
    ['second route bad', v1([{ domain: 'a.test', target: 'http://10.0.0.1:80' }, { domain: 'b.test', target: 'ftp://x' }]), '$.routes[1].target']
  ]
  for (const [name, doc, path, message] of cases) {
    const result = parseRouteTable(doc)
    t.notOk(result.ok, `${name}: refused`)
    if (result.ok) continue
    const hit = result.errors.find((e) => e.path === path)
    t.ok(hit, `${name}: reported at ${path} (got ${result.errors.map((e) => e.path).join(', ')})`)
    if (message !== undefined && hit !== undefined) t.match(hit.message, message, `${name}: message`)
  }
})

t.test('JSON syntax errors and truncated files', async (t) => {
  for (const text of ['', '   ', '{', '{"version": 1, "routes": [', '{"version": 1, "routes": [{"domain": "a.te', 'null', '{version: 1}']) {
    const result = parseRouteFileText(text)
    t.notOk(result.ok, `refused: ${JSON.stringify(text)}`)
    if (!result.ok) t.equal(result.errors[0].path, '$')
  }
})

t.test('every problem is reported, not only the first', async (t) => {
  const result = parseRouteTable(v1([{ domain: 'A.test', target: 1 }, { domain: 'b.test', redirect_to: 'c.test', redirect_code: 999 }]))
  t.notOk(result.ok)
  if (!result.ok) t.ok(result.errors.length >= 3, `${result.errors.length} problems`)
})

t.test('valid v1 file: defaults, freezing, trailing dot', async (t) => {
  const result = parseRouteTable(v1([
    { domain: 'app.test.', target: 'http://10.0.0.12:8080', vm: 'app', redirect_to_https: true, rate_profile: 'default' },
    { domain: 'www.app.test', redirect_to: 'app.test', redirect_code: 301 },
    { domain: 'old.app.test', redirect_to: 'app.test' },
    { domain: 'v6.test', target: 'http://[fd00::5]:80' },
    { domain: 'xn--caf-dma.test', target: 'http://vm-host:81' }
  ]))
  t.ok(result.ok)
  if (!result.ok) return
  const [app, www, old, v6, idn] = result.table.routes
  t.equal(app.domain, 'app.test')
  t.same(app.target, { host: '10.0.0.12', port: 8080, origin: 'http://10.0.0.12:8080' })
  t.equal(app.redirectToHttps, true)
  t.equal(www.redirectCode, 301)
  t.equal(old.redirectCode, 302, 'redirect_code defaults to 302')
  t.equal(old.redirectToHttps, false, 'redirect_to_https defaults to false in the file')
  t.equal(v6.target?.origin, 'http://[fd00::5]:80')
  t.equal(idn.target?.port, 81)
  t.ok(Object.isFrozen(result.table) && Object.isFrozen(result.table.routes) && Object.isFrozen(app), 'deep-frozen')
})

t.test('the legacy Mulch file is detected and converted', async (t) => {
  const legacy = {
    'app.test': { Name: 'app.test', VMName: 'app', RedirectTo: '', RedirectCode: 0, DestinationHost: '10.104.0.12', DestinationPort: 8080, RedirectToHTTPS: true, RateProfile: 'default' },
    'www.app.test': { Name: 'www.app.test', VMName: 'app', RedirectTo: 'app.test', RedirectCode: 301, DestinationHost: '', DestinationPort: 0, RedirectToHTTPS: false, RateProfile: '' }
  }
  const result = parseRouteTable(legacy)
  t.ok(result.ok)
  if (!result.ok) return
  t.equal(result.table.format, 'mulch-legacy')
  const app = result.table.routes.find((r) => r.domain === 'app.test')
  t.equal(app?.target?.origin, 'http://10.104.0.12:8080')
  t.equal(app?.vm, 'app')
  t.equal(app?.redirectToHttps, true)
  const www = result.table.routes.find((r) => r.domain === 'www.app.test')
  t.equal(www?.redirectTo, 'app.test')
  t.equal(www?.redirectCode, 301)

  const bad = parseRouteTable({ 'x.test': { Name: 'x.test', DestinationHost: '10.0.0.1', DestinationPort: 99999 } })
  t.notOk(bad.ok)
  if (!bad.ok) t.equal(bad.errors[0].path, '$["x.test"].DestinationPort')
})

t.test('serialisation is sorted, stable and round-trips', async (t) => {
  const parsed = parseRouteTable(v1([{ domain: 'b.test', target: 'http://10.0.0.2:80' }, { domain: 'a.test', redirect_to: 'b.test', redirect_code: 308 }]))
  t.ok(parsed.ok)
  if (!parsed.ok) return
  const text = serializeRouteTable(parsed.table.routes)
  t.equal(text, serializeRouteTable([...parsed.table.routes].reverse()), 'order-independent')
  const again = parseRouteFileText(text)
  t.ok(again.ok)
  if (again.ok) t.same(again.table.routes.map((r) => r.domain), ['a.test', 'b.test'])
})

t.test('host name and target helpers', async (t) => {
  t.equal(hostnameProblem('a-b.example.com'), undefined)
  t.equal(hostnameProblem('xn--bcher-kva.example'), undefined)
  t.type(hostnameProblem('a.123'), 'string', 'all-numeric TLD refused')
  t.type(parseTarget('http://u:p@10.0.0.1:80'), 'string', 'credentials refused')
  t.same(parseTarget('http://10.0.0.1'), { host: '10.0.0.1', port: 80, origin: 'http://10.0.0.1:80' }, 'port defaults to 80')
})
