/**
 * Route publishing: the table made from active revisions is one the proxy's own
 * parser (and `vmfront routes check`) accepts, and it is written atomically.
 */
import t from 'tap'
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseRouteFileText } from '../../proxy/route-table.ts'
import { removeStaleTempFiles, renderRouteFile, routesFor, writeFileAtomic } from '../../daemon-adapter/route-writer.ts'
import type { Revision } from '../../daemon-adapter/registry.ts'
import { parseVmDefinitionText } from '../../daemon-adapter/vm-definition.ts'
import { runCli, tempDir } from './daemon-process.ts'

const ctx = { driver: 'static', defaultNetwork: 'default' } as const
function revision (toml: string, address: string): Revision {
  const definition = parseVmDefinitionText(toml, 'vm.toml', ctx)
  return { id: 1, vm: definition.name, number: 0, state: 'active', definition, address, handle: 'h', createdAt: 'now' }
}

t.test('routes of active revisions, as the proxy reads them', async (t) => {
  const routes = routesFor([
    revision(`name = "app"\naddress = "10.104.0.12"\ndomains = ['app.example.com->8080', 'b.example.com']\nredirects = [['www.app.example.com', 'app.example.com', '301']]\nrate_profile = "strict"`, '10.104.0.12'),
    revision(`name = "v6"\naddress = "fd00::5"\ndomains = ['v6.example.com->3000']\nredirect_to_https = false`, 'fd00::5')
  ])
  const text = renderRouteFile(routes)
  const parsed = parseRouteFileText(text)
  t.ok(parsed.ok, JSON.stringify(parsed))
  if (!parsed.ok) return
  const byDomain = new Map(parsed.table.routes.map((r) => [r.domain, r]))
  t.match(byDomain.get('app.example.com'), { target: { origin: 'http://10.104.0.12:8080' }, vm: 'app', redirectToHttps: true, rateProfile: 'strict' })
  t.match(byDomain.get('b.example.com'), { target: { origin: 'http://10.104.0.12:80' } })
  t.match(byDomain.get('www.app.example.com'), { redirectTo: 'app.example.com', redirectCode: 301 })
  t.match(byDomain.get('v6.example.com'), { target: { origin: 'http://[fd00::5]:3000' }, redirectToHttps: false })
  t.equal(parsed.table.routes.length, 4)
  t.same(JSON.parse(text).routes.map((r: { domain: string }) => r.domain), ['app.example.com', 'b.example.com', 'v6.example.com', 'www.app.example.com'], 'sorted: same table, same bytes')
  t.equal(renderRouteFile([]), '{\n  "version": 1,\n  "routes": []\n}\n', 'an empty table is a valid file')

  const dir = tempDir(t)
  const file = join(dir, 'routes.json')
  writeFileAtomic(file, text)
  const check = await runCli(['routes', 'check', file])
  t.equal(check.code, 0, `vmfront routes check accepts it: ${check.stdout}${check.stderr}`)
})

t.test('an invalid table is never written', async (t) => {
  t.throws(() => renderRouteFile([
    { domain: 'a.example.com', target: 'http://10.0.0.1:80' },
    { domain: 'a.example.com', target: 'http://10.0.0.2:80' }
  ]), { code: 'ROUTES_INVALID', message: /duplicate/ })
})

t.test('atomic write: whole file, mode 0644, no temp file left, directory created', async (t) => {
  const dir = tempDir(t)
  const file = join(dir, 'sub', 'routes.json')
  writeFileAtomic(file, 'one\n')
  writeFileAtomic(file, 'two\n')
  t.equal(readFileSync(file, 'utf8'), 'two\n')
  t.equal(statSync(file).mode & 0o777, 0o644)
  t.same(readdirSync(join(dir, 'sub')), ['routes.json'])

  // A failure leaves the old file and no temp file.
  const blocked = join(dir, 'blocked')
  mkdirSync(blocked)
  writeFileSync(join(blocked, 'routes.json'), 'old\n')
  mkdirSync(join(blocked, 'routes.json.d'))
  t.throws(() => writeFileAtomic(join(blocked, 'routes.json.d'), 'new\n'), { code: 'ROUTES_WRITE_FAILED', message: /routes\.json\.d/ })
  t.same(readdirSync(blocked).sort(), ['routes.json', 'routes.json.d'])
  t.equal(readFileSync(join(blocked, 'routes.json'), 'utf8'), 'old\n')
})

t.test('temp files of a killed writer are removed', async (t) => {
  const dir = tempDir(t)
  const file = join(dir, 'routes.json')
  writeFileAtomic(file, 'x\n')
  writeFileSync(join(dir, '.routes.json.4242.deadbeef.tmp'), 'half')
  writeFileSync(join(dir, 'other.tmp'), 'not ours')
  t.same(removeStaleTempFiles(file), ['.routes.json.4242.deadbeef.tmp'])
  t.same(readdirSync(dir).sort(), ['other.tmp', 'routes.json'])
})
