/**
 * The libvirt driver against libvirt's built-in test hypervisor (`virsh -c
 * test:///default`). That hypervisor forgets everything between connections, so the
 * driver's whole command sequences run in one virsh invocation, as the driver runs
 * them: what is asserted here is what real libvirt accepted.
 */
import t from 'tap'
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseDaemonConfig } from '../../daemon-adapter/config.ts'
import { createLibvirtDriver } from '../../daemon-adapter/drivers/libvirt.ts'
import { createVirshRunner, quoteVirshArg, virshBatch } from '../../daemon-adapter/drivers/virsh.ts'
import type { VirshCommand, VirshRunner } from '../../daemon-adapter/drivers/virsh.ts'
import { silentLogger } from '../../daemon-adapter/log.ts'
import type { Revision } from '../../daemon-adapter/registry.ts'
import { parseVmDefinitionText } from '../../daemon-adapter/vm-definition.ts'
import { runCli, runVm, startDaemonProcess, tempDir, writeDaemonConfig } from './daemon-process.ts'

const VIRSH = '/usr/bin/virsh'
const config = parseDaemonConfig({
  driver: 'libvirt',
  libvirt: { uri: 'test:///default', virsh: VIRSH, pool: 'default-pool', network: 'default', ip_range: '192.168.122.100-192.168.122.110', command_timeout: '20s' }
}, '/tmp/daemon.toml').libvirt
const runner = createVirshRunner({ virsh: VIRSH, uri: config.uri, timeoutMs: config.commandTimeoutMs })

function makeDriver (workDir: string, run: VirshRunner = runner, bytes = [0xab, 0xcd, 0xef]) {
  return createLibvirtDriver({ config, runner: run, workDir, log: silentLogger(), random: () => Buffer.from(bytes) })
}

function revisionOf (driver: ReturnType<typeof makeDriver>, toml: string, number = 0): Revision {
  const definition = parseVmDefinitionText(toml, 'vm.toml', { driver: 'libvirt', defaultNetwork: 'default' })
  const placement = driver.place(definition, number, { ips: new Set(['192.168.122.100']), macs: new Set() })
  return { id: 1, vm: definition.name, number, state: 'pending', definition, createdAt: 'now', ...placement }
}

/** Runs commands in one virsh process and splits stdout per command with echo markers. */
async function session (commands: readonly VirshCommand[]): Promise<string[]> {
  const marked = commands.flatMap((c, i) => [['echo', `@@step-${i}`], c])
  const { stdout } = await runner.run(marked)
  return stdout.split(/^@@step-\d+$/m).slice(1).map((s) => s.trim())
}

t.test('placement: an IP from the range not yet taken, a QEMU MAC, a per-revision name', async (t) => {
  const driver = makeDriver(tempDir(t))
  const rev = revisionOf(driver, 'name = "app"\ndomains = ["app.example.com->8080"]', 3)
  t.equal(rev.ip, '192.168.122.101', '.100 is taken')
  t.equal(rev.address, rev.ip)
  t.equal(rev.mac, '52:54:00:ab:cd:ef')
  t.equal(rev.handle, 'vmfront-app-r3')
  const full = new Set(Array.from({ length: 11 }, (_, i) => `192.168.122.${100 + i}`))
  t.throws(() => driver.place(rev.definition, 4, { ips: full, macs: new Set() }), { code: 'DRIVER_FAILED', message: /no free IP/ })
})

t.test('virsh quoting survives quotes and separators', async (t) => {
  t.equal(quoteVirshArg("it's"), "'it'\\''s'")
  t.equal(virshBatch([['echo', 'a;b'], ['echo', "x 'y' \"z\""]]), "'echo' 'a;b' ; 'echo' 'x '\\''y'\\'' \"z\"'")
  const out = await session([['echo', 'a;b c'], ['echo', "it's \"fine\" $HOME `x`"]])
  t.same(out, ['a;b c', "it's \"fine\" $HOME `x`"], 'arguments reach virsh verbatim: no shell, no splitting')
  t.throws(() => quoteVirshArg('a\nb'), { code: 'DRIVER_FAILED' })
})

t.test('the provision sequence is accepted by libvirt, and teardown undoes all of it', async (t) => {
  const dir = tempDir(t)
  const driver = makeDriver(dir)
  const rev = revisionOf(driver, 'name = "app"\ndomains = ["app.example.com->8080"]\ncpus = 2\nram = "512M"\ndisk_size = "10G"\nseed = "seed.qcow2"')
  const plan = driver.plan(rev)
  writeFileSync(plan.xmlFile, plan.xml)
  const out = await session([
    ['vol-create-as', 'default-pool', 'seed.qcow2', '1G', '--format', 'qcow2'],
    ...plan.provision,
    ['dumpxml', rev.handle],
    ['net-dumpxml', 'default'],
    ['vol-dumpxml', `${rev.handle}.qcow2`, '--pool', 'default-pool'],
    ...plan.teardown,
    ['list', '--all', '--name'],
    ['net-dumpxml', 'default'],
    ['vol-list', 'default-pool']
  ])
  const n = plan.provision.length + 1
  t.equal(out[n - 1], 'running', 'domstate after start')
  const domain = out[n]
  t.match(domain, `<name>${rev.handle}</name>`)
  t.match(domain, "<mac address='52:54:00:ab:cd:ef'/>")
  t.match(domain, "<source pool='default-pool' volume='vmfront-app-r0.qcow2'/>")
  t.match(domain, "<memory unit='KiB'>524288</memory>")
  t.match(domain, "<vcpu placement='static'>2</vcpu>")
  t.match(domain, "<source network='default'/>")
  t.match(out[n + 1], "<host mac='52:54:00:ab:cd:ef' name='vmfront-app-r0' ip='192.168.122.101'/>", 'static DHCP entry on the network')
  t.match(out[n + 2], /<capacity unit='bytes'>10737418240<\/capacity>/)
  t.match(out[n + 2], /<backingStore>[\s\S]*seed\.qcow2/, 'the disk is an overlay of the seed')
  const after = out.slice(n + 3 + plan.teardown.length)
  t.notMatch(after[0], rev.handle, 'domain undefined')
  t.notMatch(after[1], '52:54:00:ab:cd:ef', 'DHCP entry removed')
  t.notMatch(after[2], `${rev.handle}.qcow2`, 'volume deleted')
  t.match(after[2], 'seed.qcow2', 'the seed stays')
})

t.test('driver.provision and driver.teardown run for real', async (t) => {
  const dir = tempDir(t)
  const calls: VirshCommand[][] = []
  const recording: VirshRunner = { run: (commands, options) => { calls.push([...commands]); return runner.run(commands, options) } }
  const driver = makeDriver(dir, recording)
  const rev = revisionOf(driver, 'name = "web"\ndomains = ["web.example.com"]')
  await driver.provision(rev)
  t.ok(existsSync(join(dir, 'vmfront-web-r0.xml')), 'the domain XML is kept while the revision lives')
  t.match(readFileSync(join(dir, 'vmfront-web-r0.xml'), 'utf8'), "<domain type='kvm'>")
  t.same(calls[0].map((c) => c[0]), ['vol-create-as', 'net-update', 'define', 'start', 'domstate'], 'one virsh process for the whole sequence')
  // The test hypervisor has forgotten the domain: teardown finds nothing and must
  // still succeed (what a retry after a crash sees).
  await driver.teardown(rev)
  t.equal(existsSync(join(dir, 'vmfront-web-r0.xml')), false)
})

t.test('a failing provision reports virsh\'s error and undoes itself', async (t) => {
  const calls: VirshCommand[][] = []
  const recording: VirshRunner = { run: (commands, options) => { calls.push([...commands]); return runner.run(commands, options) } }
  const driver = makeDriver(tempDir(t), recording)
  const rev = revisionOf(driver, 'name = "bad"\nseed = "no-such-seed.qcow2"')
  await t.rejects(driver.provision(rev), { code: 'DRIVER_FAILED', message: /no-such-seed\.qcow2/ })
  t.equal(calls.length, 2)
  t.same(calls[1].map((c) => c[0]), ['destroy', 'undefine', 'vol-delete', 'net-update'], 'the undo ran')
})

t.test('every virsh call is bounded by a timeout', async (t) => {
  const dir = tempDir(t)
  const slow = join(dir, 'slow-virsh')
  writeFileSync(slow, '#!/bin/sh\nsleep 10\n')
  chmodSync(slow, 0o755)
  const bounded = createVirshRunner({ virsh: slow, uri: 'test:///default', timeoutMs: 200 })
  const started = Date.now()
  await t.rejects(bounded.run([['list']]), { code: 'DRIVER_TIMEOUT' })
  t.ok(Date.now() - started < 5000)
  const missing = createVirshRunner({ virsh: join(dir, 'nope'), uri: 'test:///default', timeoutMs: 1000 })
  await t.rejects(missing.run([['list']]), { code: 'DRIVER_FAILED', message: /cannot run/ })
})

t.test('the daemon with driver = "libvirt" on test:///default', async (t) => {
  const dir = tempDir(t)
  const configFile = writeDaemonConfig(dir, `[libvirt]\nuri = "test:///default"\nvirsh = "${VIRSH}"\npool = "default-pool"\nip_range = "192.168.122.100-192.168.122.110"`, 'driver = "libvirt"\nup_probe = "none"')
  const daemon = await startDaemonProcess(t, configFile)
  const key = readFileSync(join(dir, 'data', 'api-key'), 'utf8').trim()
  const vm = (...args: string[]) => runVm(['vm', '--url', daemon.url, '--key', key, ...args])
  writeFileSync(join(dir, 'db.toml'), 'name = "db"\ndomains = ["db.example.com->5432"]\ncpus = 2\nram = "1G"\n')
  const created = await runCli(['vm', '--url', daemon.url, '--key', key, 'create', join(dir, 'db.toml')])
  t.equal(created.code, 0, created.stderr)
  t.match(created.stdout, '192.168.122.100')
  const routes = JSON.parse(readFileSync(join(dir, 'routes.json'), 'utf8'))
  t.same(routes.routes.map((r: { target: string }) => r.target), ['http://192.168.122.100:5432'])

  const rebuilt = await vm('rebuild', 'db')
  t.equal(rebuilt.code, 0, rebuilt.stderr)
  t.match(rebuilt.stdout, 'r1', 'new revision')
  t.match(rebuilt.stdout, '192.168.122.101', 'r1 got its own IP while r0 still held .100')
  const info = JSON.parse((await vm('info', 'db', '--json')).stdout)
  t.same(info.revisions.map((r: { number: number, handle: string }) => [r.number, r.handle]), [[1, 'vmfront-db-r1']], 'r0 retired')

  const bad = join(dir, 'bad.toml')
  writeFileSync(bad, 'name = "bad"\naddress = "10.0.0.1"\n')
  const refused = await vm('create', bad)
  t.equal(refused.code, 2)
  t.match(refused.stderr, /bad\.toml: address: .*libvirt driver/)

  const deleted = await vm('delete', 'db', '--force')
  t.equal(deleted.code, 0, deleted.stderr)
  t.same(JSON.parse(readFileSync(join(dir, 'routes.json'), 'utf8')).routes, [])
})
