/**
 * VM `ports` in Mulch's VM TOML syntax (SPEC §11): public exports are validated,
 * published in the route file's `ports` (as the proxy's own parser reads them),
 * and a public port is claimed by one VM only.
 */
import t from 'tap'
import { join } from 'node:path'
import { parseRouteFileText } from '../../proxy/route-table.ts'
import { openRegistry } from '../../daemon-adapter/registry.ts'
import type { Placement, Revision } from '../../daemon-adapter/registry.ts'
import { portsFor, renderRouteFile, routesFor } from '../../daemon-adapter/route-writer.ts'
import { definitionToJson, parseVmDefinitionText } from '../../daemon-adapter/vm-definition.ts'
import { parseVmPorts, type VmGroupPort } from '../../daemon-adapter/vm-ports.ts'
import { tempDir } from './daemon-process.ts'

const ctx = { driver: 'static', defaultNetwork: 'default' } as const
const vm = (name: string, ports: string[], address = '10.104.0.12'): ReturnType<typeof parseVmDefinitionText> =>
  parseVmDefinitionText(`name = "${name}"\naddress = "${address}"\nports = ${JSON.stringify(ports)}`, `${name}.toml`, ctx)

t.test('Mulch\'s public port syntax: plain, renamed, PROXY, ranges', async (t) => {
  const problems: Array<{ key: string, message: string }> = []
  const ports = parseVmPorts(['22/tcp->@PUBLIC:2222', '80/tcp -> @PUBLIC', '443/tcp->@PUBLIC (PROXY)', '25/tcp->@PUBLIC:2525 (PROXY:8025)', '3000-3002/tcp->@PUBLIC:4000'], problems)
  t.same(problems, [])
  t.same(ports, [
    { port: 22, publicPort: 2222, proxyPort: 0 },
    { port: 80, publicPort: 80, proxyPort: 0 },
    { port: 443, publicPort: 443, proxyPort: 8443 },
    { port: 25, publicPort: 2525, proxyPort: 8025 },
    { port: 3000, publicPort: 4000, proxyPort: 0 },
    { port: 3001, publicPort: 4001, proxyPort: 0 },
    { port: 3002, publicPort: 4002, proxyPort: 0 }
  ])
})

t.test('refused ports say why, by key', async (t) => {
  const problems: Array<{ key: string, message: string }> = []
  parseVmPorts(['22/udp->@PUBLIC', '3306/tcp->@db:3307', '22/tcp<-@PUBLIC', '22', 70000, '1-30/tcp->@PUBLIC', '22/tcp->@PUBLIC:2222', '23/tcp->@PUBLIC:2222'], problems)
  t.same(problems.map((p) => p.key), ['ports[0]', 'ports[1]', 'ports[2]', 'ports[3]', 'ports[4]', 'ports[5]', 'ports[7]'])
  t.match(problems[0].message, /only tcp is supported/)
  t.match(problems[1].message, /a VM-to-VM port \(@db\) has no public port/)
  t.match(problems[2].message, /can only be exported/)
  t.match(problems[3].message, /is not a port in Mulch's syntax/)
  t.match(problems[4].message, /must be a string/)
  t.match(problems[5].message, /range is too big \(at most 20 ports\)/)
  t.match(problems[6].message, /public port 2222 is already used by ports\[6\]/)
  t.notMatch(problems.map((p) => p.message).join('\n'), /undefined/)
  t.throws(() => vm('bad', ['3306/tcp->@db (PROXY)']), { code: 'VM_INVALID' })
})

t.test('Mulch\'s VM-to-VM groups: exports and imports, imports numbered as mulchd does', async (t) => {
  const problems: Array<{ key: string, message: string }> = []
  const groups: VmGroupPort[] = []
  const ports = parseVmPorts(['22/tcp->@PUBLIC', '3306/tcp<-@db', '6379/tcp <- @cache', '8080/tcp->@web', '3306/tcp<-@db', '1-3/tcp->@db'], problems, groups)
  t.same(ports, [{ port: 22, publicPort: 22, proxyPort: 0 }])
  t.same(groups, [
    { direction: 'import', port: 3306, group: 'db', index: 0 },
    { direction: 'import', port: 6379, group: 'cache', index: 1 },
    { direction: 'export', port: 8080, group: 'web', index: 0 }
  ])
  t.same(problems.map((p) => `${p.key} ${p.message}`), ['ports[4] "3306/tcp<-@db": the same as ports[1]', 'ports[5] "1-3/tcp->@db": a VM-to-VM port (@db) cannot be a range'])
  const def = vm('app', ['3306/tcp<-@db', '80/tcp->@PUBLIC'])
  t.same(definitionToJson(def).ports, ['80/tcp->@PUBLIC', '3306/tcp<-@db'], 'vm info shows them back in Mulch\'s syntax')
})

t.test('imports reach the route file as mulchd forwards them: gateway:9001+index, by source address, to the exporter', async (t) => {
  const rev = (id: number, name: string, address: string, ports: string[]): Revision => ({ id, vm: name, number: 0, state: 'active', definition: vm(name, ports, address), address, handle: 'h', createdAt: 'now' })
  const revisions = [
    rev(1, 'db', '10.0.0.10', ['3306/tcp->@db']),
    rev(2, 'app1', '10.0.0.11', ['3306/tcp<-@db']),
    rev(3, 'app2', '10.0.0.12', ['6379/tcp<-@cache', '3306/tcp<-@db'])
  ]
  t.same(portsFor(revisions), [], 'no vm_gateway: no import is published')
  const json = portsFor(revisions, '10.0.0.1')
  t.same(json, [
    { listen: '10.0.0.1:9001', target: '10.0.0.10:3306', allow: ['10.0.0.11'] },
    { listen: '10.0.0.1:9002', target: '10.0.0.10:3306', allow: ['10.0.0.12'] }
  ], 'app2\'s cache import has no exporter: left out, as mulchd does')
  const parsed = parseRouteFileText(renderRouteFile([], json))
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors))
  t.equal(parsed.table.ports?.length, 2)
  const shared = portsFor([rev(1, 'db', '10.0.0.10', ['3306/tcp->@db']), rev(2, 'a', '10.0.0.11', ['3306/tcp<-@db']), rev(3, 'b', '10.0.0.12', ['3306/tcp<-@db'])], '10.0.0.1')
  const table = parseRouteFileText(renderRouteFile([], shared))
  if (!table.ok) throw new Error(JSON.stringify(table.errors))
  t.same(table.table.ports?.map((p) => ({ listen: p.listen, rules: p.rules.map((r) => `${r.allow.join(',')}->${r.target.host}:${r.target.port}`) })), [
    { listen: { host: '10.0.0.1', port: 9001 }, rules: ['10.0.0.11->10.0.0.10:3306', '10.0.0.12->10.0.0.10:3306'] }
  ], 'two importers share the gateway port, one rule per source')
})

t.test('one exporter per group port (registry claims)', async (t) => {
  const reg = openRegistry(join(tempDir(t), 'r.sqlite'))
  t.teardown(() => { reg.close() })
  const r0 = reg.beginRevision(vm('db', ['3306/tcp->@db']), { create: true }, (n) => ({ address: '10.0.0.5', handle: `h-${n}` }))
  reg.activate(r0.id)
  const err = t.throws(() => reg.beginRevision(vm('db2', ['3306/tcp->@db'], '10.0.0.6'), { create: true }, (n) => ({ address: '10.0.0.6', handle: `h2-${n}` }))) as Error
  t.match(err, { code: 'DOMAIN_CONFLICT', message: 'tcp export 3306@db is already claimed by VM "db"' })
})

t.test('published ports reach the route file as the proxy reads them', async (t) => {
  const def = vm('app', ['22/tcp->@PUBLIC:2222', '443/tcp->@PUBLIC (PROXY:8444)'])
  t.same(definitionToJson(def).ports, ['22/tcp->@PUBLIC:2222', '443/tcp->@PUBLIC (PROXY:8444)'])
  const revisions: Revision[] = [{ id: 1, vm: 'app', number: 0, state: 'active', definition: def, address: '10.104.0.12', handle: 'h', createdAt: 'now' }]
  const text = renderRouteFile(routesFor(revisions), portsFor(revisions))
  const parsed = parseRouteFileText(text)
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors))
  t.same(parsed.table.ports?.map((p) => ({ listen: p.listen, rules: p.rules })), [
    { listen: { host: '', port: 443 }, rules: [{ allow: [], target: { host: '10.104.0.12', port: 8444 }, proxyProtocol: 1 }] },
    { listen: { host: '', port: 2222 }, rules: [{ allow: [], target: { host: '10.104.0.12', port: 22 }, proxyProtocol: 0 }] }
  ])
  t.equal(renderRouteFile([], []), '{\n  "version": 1,\n  "routes": []\n}\n', 'no ports: the same bytes as before ports existed')
})

t.test('a public port belongs to one VM (registry claims)', async (t) => {
  const reg = openRegistry(join(tempDir(t), 'r.sqlite'))
  t.teardown(() => { reg.close() })
  const place = (address: string) => (n: number): Placement => ({ address, handle: `h-r${n}` })
  const r0 = reg.beginRevision(vm('app', ['22/tcp->@PUBLIC:2222']), { create: true }, place('10.0.0.5'))
  reg.activate(r0.id)
  const err = t.throws(() => reg.beginRevision(vm('other', ['22/tcp->@PUBLIC:2222'], '10.0.0.6'), { create: true }, place('10.0.0.6'))) as Error
  t.match(err, { code: 'DOMAIN_CONFLICT', message: 'tcp port 2222 is already claimed by VM "app"' })
  const ok = reg.beginRevision(vm('other', ['22/tcp->@PUBLIC:2223'], '10.0.0.6'), { create: true }, place('10.0.0.6'))
  t.equal(ok.state, 'pending', 'another public port is free')
})
