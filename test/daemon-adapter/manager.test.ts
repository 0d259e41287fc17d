/**
 * The VM life cycle in process (real registry, real route file, static driver with
 * the TCP up-probe): a new revision takes over only once it is up, a revision that
 * never comes up is dropped, and one change at a time per VM.
 */
import t from 'tap'
import net from 'node:net'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { createVmManager } from '../../daemon-adapter/manager.ts'
import type { ManagerOptions } from '../../daemon-adapter/manager.ts'
import { createProxyNotifier } from '../../daemon-adapter/notify.ts'
import { createPublisher } from '../../daemon-adapter/publisher.ts'
import { openRegistry } from '../../daemon-adapter/registry.ts'
import { createStaticDriver } from '../../daemon-adapter/drivers/static.ts'
import type { Driver } from '../../daemon-adapter/drivers/driver.ts'
import { AdapterError } from '../../daemon-adapter/errors.ts'
import { silentLogger } from '../../daemon-adapter/log.ts'
import { parseVmDefinitionText } from '../../daemon-adapter/vm-definition.ts'
import { deadPort } from '../helpers/backend.ts'
import { tempDir, until } from './daemon-process.ts'

const def = (name: string, port: number, domain = `${name}.example.com`) =>
  parseVmDefinitionText(`name = "${name}"\naddress = "127.0.0.1"\ndomains = ["${domain}->${port}"]`, `${name}.toml`, { driver: 'static', defaultNetwork: 'default' })

function setup (t: { teardown (fn: () => unknown): void }, overrides: Partial<ManagerOptions> = {}) {
  const dir = tempDir(t)
  const routesFile = join(dir, 'routes.json')
  const registry = openRegistry(join(dir, 'r.sqlite'))
  const log = silentLogger()
  const publisher = createPublisher({ registry, routesFile, notifier: createProxyNotifier({ pidFile: join(dir, 'none.pid'), debounceMs: 1, log }), log })
  const manager = createVmManager({ registry, driver: createStaticDriver(), publisher, log, upProbe: 'tcp', upTimeoutMs: 5000, retireDrainMs: 0, ...overrides })
  t.teardown(async () => { await manager.close(); registry.close() })
  const target = (domain: string): string | undefined =>
    (JSON.parse(readFileSync(routesFile, 'utf8')).routes as { domain: string, target?: string }[]).find((r) => r.domain === domain)?.target
  return { manager, registry, target }
}

async function listen (t: { teardown (fn: () => unknown): void }, port = 0): Promise<number> {
  const server = net.createServer((s) => { s.end() })
  await new Promise<void>((resolve) => { server.listen(port, '127.0.0.1', resolve) })
  t.teardown(() => { server.close() })
  return (server.address() as net.AddressInfo).port
}

t.test('a rebuild switches only once the new revision is up', async (t) => {
  const { manager, registry, target } = setup(t)
  const oldPort = await listen(t)
  await manager.create(def('app', oldPort))
  t.equal(target('app.example.com'), `http://127.0.0.1:${oldPort}`)

  const newPort = await deadPort()
  const rebuild = manager.rebuild('app', def('app', newPort))
  await until('r1 pending', () => registry.get('app')?.revisions.some((r) => r.state === 'pending') === true)
  t.equal(target('app.example.com'), `http://127.0.0.1:${oldPort}`, 'r0 keeps serving while r1 is not up')
  await t.rejects(manager.rebuild('app'), { code: 'VM_BUSY' }, 'one change at a time')
  await t.rejects(manager.remove('app'), { code: 'VM_BUSY' })
  await listen(t, newPort)
  const result = await rebuild
  t.equal(target('app.example.com'), `http://127.0.0.1:${newPort}`)
  t.same(result.vm?.revisions.map((r) => [r.number, r.state]), [[1, 'active']], 'r0 retired and deleted')
  t.match(result.publish, { written: true, signal: { status: 'no-pid-file' } })
})

t.test('a revision that never comes up is dropped; the VM keeps serving', async (t) => {
  const { manager, registry, target } = setup(t, { upTimeoutMs: 300 })
  const port = await listen(t)
  await manager.create(def('app', port))
  const dead = await deadPort()
  await t.rejects(manager.rebuild('app', def('app', dead)), { code: 'VM_NOT_UP', message: new RegExp(`port ${dead}`) })
  t.same(registry.get('app')?.revisions.map((r) => [r.number, r.state]), [[0, 'active']])
  t.equal(target('app.example.com'), `http://127.0.0.1:${port}`)
  await t.rejects(manager.create(def('ghost', dead)), { code: 'VM_NOT_UP' })
  t.equal(registry.get('ghost'), undefined, 'a create that never came up leaves no VM')
  t.same(registry.conflicts(['ghost.example.com'], 'x'), [], 'nor a claim')
})

t.test('a driver failure undoes the revision', async (t) => {
  const torn: number[] = []
  const failing: Driver = {
    name: 'failing',
    place: (d, n) => ({ address: '127.0.0.1', handle: `${d.name}-r${n}` }),
    provision: async () => { throw new AdapterError('DRIVER_FAILED', 'hypervisor says no') },
    teardown: async (r) => { torn.push(r.number) }
  }
  const { manager, registry } = setup(t, { driver: failing, upProbe: 'none' })
  await t.rejects(manager.create(def('app', 80)), { code: 'DRIVER_FAILED', message: 'hypervisor says no' })
  t.same(torn, [0])
  t.same(registry.list(), [])
})

t.test('close() ends waits for revisions coming up', async (t) => {
  const { manager, registry } = setup(t, { upTimeoutMs: 60_000 })
  const waiting = manager.create(def('slow', await deadPort()))
  await until('pending', () => registry.get('slow') !== undefined)
  const closing = manager.close()
  await t.rejects(waiting, { code: 'VM_NOT_UP', message: /shutting down/ })
  await closing
  t.equal(registry.get('slow'), undefined, 'cleaned up on the way out')
  await t.rejects(manager.create(def('late', 80)), { code: 'VM_BUSY', message: /shutting down/ })
})
