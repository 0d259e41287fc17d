// Route validation hardening (issue 9 point 14, and the bounded messages of point 7).
import t from 'tap'
import { isEmptyLegacyTable, MAX_KEPT_PROBLEMS, parseRouteFileText, parseRouteTable, type RouteParseResult } from '../../proxy/route-table.ts'

const v1 = (routes: unknown, extra: Record<string, unknown> = {}): unknown => ({ ...extra, version: 1, routes })
const legacyEntry = (name: string, host: string, port = 80): Record<string, unknown> =>
  ({ Name: name, VMName: 'vm', RedirectTo: '', RedirectCode: 0, DestinationHost: host, DestinationPort: port, RedirectToHTTPS: false, RateProfile: '' })

function errorsOf (result: RouteParseResult): Array<{ path: string, message: string }> {
  return result.ok ? [] : result.errors
}

t.test('a legacy file naming one domain twice (trailing dot) is refused as a duplicate', async (t) => {
  const result = parseRouteTable({ 'd.test': legacyEntry('d.test', '10.0.0.1'), 'd.test.': legacyEntry('d.test.', '10.0.0.2') })
  t.notOk(result.ok, 'refused: one of the two would be silently shadowed')
  t.same(errorsOf(result), [{ path: '$["d.test."]', message: '"d.test" is a duplicate of $["d.test"] (a trailing dot names the same domain)' }])
  const v1dup = parseRouteTable(v1([{ domain: 'a.test', target: 'http://10.0.0.1:80' }, { domain: 'a.test.', target: 'http://10.0.0.2:80' }]))
  t.same(errorsOf(v1dup), [{ path: '$.routes[1].domain', message: '"a.test" is a duplicate of $.routes[0] (a trailing dot names the same domain)' }])
  const distinct = parseRouteTable({ 'd.test': legacyEntry('d.test', '10.0.0.1'), 'e.test.': legacyEntry('e.test.', '10.0.0.2') })
  t.ok(distinct.ok, 'distinct domains, one with a trailing dot, load')
  if (distinct.ok) t.same(distinct.table.routes.map((r) => r.domain), ['d.test', 'e.test'])
})

t.test('target port 0 is refused in both formats', async (t) => {
  for (const target of ['http://10.0.0.1:0', 'http://10.0.0.1:00', 'http://[fd00::1]:0', 'http://vm-host:0']) {
    const result = parseRouteTable(v1([{ domain: 'a.test', target }]))
    t.same(errorsOf(result).map((e) => e.path), ['$.routes[0].target'], `${target}: refused`)
    t.match(errorsOf(result)[0]?.message, /has port 0: a VM listens on a port from 1 to 65535/)
  }
  const legacy = parseRouteTable({ 'a.test': legacyEntry('a.test', '10.0.0.1', 0) })
  t.same(errorsOf(legacy).map((e) => e.path), ['$["a.test"].DestinationPort'])
  t.ok(parseRouteTable(v1([{ domain: 'a.test', target: 'http://10.0.0.1:1' }])).ok, 'port 1 is fine')
})

t.test('a bare {} is read as Mulch\'s empty domains file, with a warning saying how to empty a v1 table', async (t) => {
  const bare = parseRouteFileText('{}\n')
  t.ok(bare.ok, 'mulchd writes {} when no VM has a domain: it parses')
  if (!bare.ok) return
  t.ok(isEmptyLegacyTable(bare.table))
  t.equal(bare.warningCount, 1)
  t.match(bare.warnings[0], { path: '$', message: /empty object: read as Mulch's empty domains file.*\{"version":1,"routes":\[\]\}/ })
  const explicit = parseRouteFileText('{"version":1,"routes":[]}')
  t.ok(explicit.ok && !isEmptyLegacyTable(explicit.table) && explicit.warnings.length === 0, 'the explicit empty v1 table: no warning')
})

t.test('a UTF-8 BOM is ignored with a warning that names it', async (t) => {
  const result = parseRouteFileText('\ufeff{"version":1,"routes":[{"domain":"a.test","target":"http://10.0.0.1:80"}]}')
  t.ok(result.ok, 'loads')
  t.match(result.warnings, [{ path: '$', message: /byte order mark \(BOM\): ignored/ }])
  const bomOnly = parseRouteFileText('\ufeff')
  t.same(errorsOf(bomOnly), [{ path: '$', message: 'the file is empty' }])
  t.match(bomOnly.warnings, [{ message: /byte order mark/ }], 'the BOM is still named')
})

t.test('"$schema" is allowed at the top of a v1 file (SPEC §13)', async (t) => {
  t.ok(parseRouteTable(v1([], { $schema: './proxy/route-file.schema.json' })).ok)
  t.same(errorsOf(parseRouteTable(v1([], { $schema: 3 }))), [{ path: '$.$schema', message: 'must be a string (the schema\'s URL or path), not a number' }])
  t.same(errorsOf(parseRouteTable(v1([], { 'bad key': 1 }))).map((e) => e.path), ['$["bad key"]'], 'other keys stay refused, at a readable path')
})

t.test('a 5 MB value is never echoed whole in a message or a path', async (t) => {
  const huge = 'x'.repeat(5 * 1024 * 1024)
  const docs: Array<[string, unknown]> = [
    ['domain', v1([{ domain: huge, target: 'http://10.0.0.1:80' }])],
    ['upper-case domain', v1([{ domain: `A${'a'.repeat(60)}.test`, target: 'http://10.0.0.1:80' }])],
    ['target', v1([{ domain: 'a.test', target: `http://${huge}` }])],
    ['target path', v1([{ domain: 'a.test', target: `http://10.0.0.1/${huge}` }])],
    ['redirect_code', v1([{ domain: 'a.test', redirect_to: 'b.test', redirect_code: huge }])],
    ['rate_profile', v1([{ domain: 'a.test', target: 'http://10.0.0.1:80', rate_profile: huge }])],
    ['version', { version: huge, routes: [] }],
    ['route key', v1([{ domain: 'a.test', target: 'http://10.0.0.1:80', [huge]: 1 }])],
    ['top key', v1([], { [huge]: 1 })],
    ['legacy key', { [huge]: legacyEntry(huge, '10.0.0.1') }],
    ['legacy field', { 'a.test': { ...legacyEntry('a.test', '10.0.0.1'), [huge]: 1 } }],
    ['legacy port', { 'a.test': legacyEntry('a.test', '10.0.0.1', huge as unknown as number) }],
    ['legacy host', { 'a.test': legacyEntry('a.test', huge) }]
  ]
  for (const [name, doc] of docs) {
    const result = parseRouteTable(doc)
    t.notOk(result.ok, `${name}: refused`)
    const problems = errorsOf(result)
    const longest = Math.max(...problems.map((p) => p.path.length + p.message.length))
    t.ok(longest < 1000, `${name}: longest problem ${longest} characters`)
    for (const p of problems) t.notMatch(`${p.path} ${p.message}`, /undefined|\[object Object\]/, `${name}: ${p.path}`)
  }
  const cut = errorsOf(parseRouteTable(v1([{ domain: 'a.test', redirect_to: 'b.test', redirect_code: huge }])))[0]
  t.match(cut.message, /^must be one of 301, 302, 307, 308, not "x{80}"…\(5242880 bytes\)$/, 'the cut says how big the value was')
})

t.test('problems are all counted, and the list kept is bounded', async (t) => {
  const n = 100_000
  const bad = parseRouteTable(v1(Array.from({ length: n }, (_, i) => ({ domain: `vm${i}.test`, target: 'ftp://x' }))))
  t.notOk(bad.ok)
  if (bad.ok) return
  t.equal(bad.errorCount, n, '100,000 bad routes: 100,000 problems counted')
  t.equal(bad.errors.length, n, 'and all listed (the kept list covers them)')
  const flood = parseRouteTable(v1(Array.from({ length: 60_000 }, () => ({}))))
  t.notOk(flood.ok)
  if (flood.ok) return
  t.equal(flood.errorCount, 120_000, 'two problems per empty route, all counted')
  t.equal(flood.errors.length, MAX_KEPT_PROBLEMS, 'the list stops at MAX_KEPT_PROBLEMS')
})

t.test('100,000 valid routes load', async (t) => {
  const routes = Array.from({ length: 100_000 }, (_, i) => ({ domain: `vm${i}.example.test`, target: `http://10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}:8080`, vm: `vm${i}` }))
  const text = JSON.stringify(v1(routes))
  const started = performance.now()
  const result = parseRouteFileText(text)
  const ms = performance.now() - started
  t.ok(result.ok, 'valid')
  if (result.ok) t.equal(result.table.routes.length, 100_000)
  t.comment(`parsed ${(text.length / 1e6).toFixed(1)} MB, 100,000 routes, in ${ms.toFixed(0)} ms`)
  t.ok(ms < 15_000, 'in seconds, not minutes')
})

t.test('values nested deeper than JSON.stringify can print are reported, never thrown', async (t) => {
  const deep = '['.repeat(20_000) + '1' + ']'.repeat(20_000)
  const cases: Array<[string, string, string]> = [
    ['v1 version', `{"version":${deep},"routes":[]}`, '$.version'],
    ['v1 domain', `{"version":1,"routes":[{"domain":${deep},"target":"http://10.0.0.1:80"}]}`, '$.routes[0].domain'],
    ['Mulch field', `{"a.test":{"Name":"a.test","DestinationHost":${deep},"DestinationPort":80}}`, '$["a.test"].DestinationHost']
  ]
  for (const [name, text, path] of cases) {
    let result: ReturnType<typeof parseRouteFileText> | undefined
    t.doesNotThrow(() => { result = parseRouteFileText(text) }, `${name}: no RangeError escapes`)
    t.equal(result?.ok, false, `${name}: invalid`)
    if (result === undefined || result.ok) continue
    const problem = result.errors.find((e) => e.path === path)
    t.ok(problem, `${name}: reported at ${path} (got ${result.errors.map((e) => e.path).join(', ')})`)
    t.ok((problem?.message.length ?? 0) < 200, `${name}: a short message`)
  }
})
