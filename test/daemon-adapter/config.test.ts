/**
 * The daemon configuration: SPEC §8 keys and defaults, unknown keys and bad values
 * named by file and key, and `vmfront daemon` exiting 2 on an invalid file.
 */
import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseDaemonConfig, loadDaemonConfig } from '../../daemon-adapter/config.ts'
import { FileInvalidError } from '../../daemon-adapter/errors.ts'
import { runCli, tempDir } from './daemon-process.ts'

t.test('defaults are the SPEC §8 values', async (t) => {
  const c = parseDaemonConfig({}, '/etc/vmfront/daemon.toml')
  t.equal(c.dataDir, '/var/lib/vmfront-daemon')
  t.equal(c.routesFile, '/var/lib/vmfront/routes.json')
  t.equal(c.proxyPidFile, '/var/lib/vmfront/proxy.pid')
  t.equal(c.driver, 'static')
  t.same(c.listen, { host: '127.0.0.1', port: 8686 })
  t.equal(c.apiKeysFile, '')
  t.equal(c.libvirt.uri, 'qemu:///system')
  t.equal(c.chain.parentUrl, '')
  t.equal(c.chain.onUnreachable, 'refuse')
  t.equal(c.reloadDebounceMs, 250)
  t.equal(c.upProbe, 'none', 'static VMs are up at once by default')
  t.equal(parseDaemonConfig({ driver: 'libvirt' }, 'x.toml').upProbe, 'tcp', 'libvirt VMs are probed by default')
  t.ok(Object.isFrozen(c) && Object.isFrozen(c.libvirt))
})

t.test('values are read, relative paths resolve against the config file', async (t) => {
  const c = parseDaemonConfig({
    data_dir: 'data',
    routes_file: '/srv/routes.json',
    listen: '[::1]:9000',
    reload_debounce: '1s',
    libvirt: { uri: 'test:///default', ip_range: '10.0.0.10-10.0.0.20', command_timeout: '5s' },
    chain: { parent_url: 'http://127.0.0.1:7000/', psk: 'a-psk-of-16-chars!', name: 'child-1', on_unreachable: 'allow' }
  }, '/etc/vmfront/daemon.toml')
  t.equal(c.dataDir, '/etc/vmfront/data')
  t.equal(c.routesFile, '/srv/routes.json')
  t.same(c.listen, { host: '::1', port: 9000 })
  t.equal(c.reloadDebounceMs, 1000)
  t.same(c.libvirt.ipRange, { first: '10.0.0.10', last: '10.0.0.20' })
  t.equal(c.libvirt.commandTimeoutMs, 5000)
  t.equal(c.chain.parentUrl, 'http://127.0.0.1:7000', 'trailing slash dropped')
  t.equal(c.chain.name, 'child-1')
  t.equal(c.chain.onUnreachable, 'allow')
})

const BAD: { name: string, doc: Record<string, unknown>, key: string, mentions: string }[] = [
  { name: 'unknown top key', doc: { colour: 'blue' }, key: 'colour', mentions: '"blue"' },
  { name: 'unknown libvirt key', doc: { libvirt: { url: 'x' } }, key: 'libvirt.url', mentions: 'not a known key' },
  { name: 'unknown chain key', doc: { chain: { mode: 'child' } }, key: 'chain.mode', mentions: 'not a known key' },
  { name: 'bad driver', doc: { driver: 'xen' }, key: 'driver', mentions: '"xen"' },
  { name: 'bad listen', doc: { listen: 'localhost' }, key: 'listen', mentions: '"localhost"' },
  { name: 'listen port too big', doc: { listen: '127.0.0.1:70000' }, key: 'listen', mentions: '70000' },
  { name: 'bad duration', doc: { reload_debounce: '5 minutes' }, key: 'reload_debounce', mentions: '"5 minutes"' },
  { name: 'data_dir not a string', doc: { data_dir: 5 }, key: 'data_dir', mentions: 'string' },
  { name: 'libvirt not a table', doc: { libvirt: 'test:///default' }, key: 'libvirt', mentions: 'table' },
  { name: 'bad ip range', doc: { libvirt: { ip_range: '10.0.0.9-10.0.0.1' } }, key: 'libvirt.ip_range', mentions: 'starts after it ends' },
  { name: 'short psk', doc: { chain: { parent_url: 'http://127.0.0.1:1', psk: 'short' } }, key: 'chain.psk', mentions: '16' },
  { name: 'bad parent_url', doc: { chain: { parent_url: 'ftp://x' } }, key: 'chain.parent_url', mentions: 'ftp://x' }
]
for (const c of BAD) {
  t.test(`rejects: ${c.name}`, async (t) => {
    const err = t.throws(() => parseDaemonConfig(c.doc, 'daemon.toml')) as FileInvalidError
    t.equal(err.code, 'CONFIG_INVALID')
    t.equal(err.exitCode, 2)
    const problem = err.problems.find((p) => p.key === c.key)
    t.ok(problem, `names ${c.key}: ${err.message}`)
    t.match(problem?.message ?? '', c.mentions)
    t.match(err.message, /^daemon\.toml: /)
  })
}

t.test('loadDaemonConfig: syntax errors and unreadable files', async (t) => {
  const dir = tempDir(t)
  const file = join(dir, 'broken.toml')
  writeFileSync(file, 'data_dir = "x\n')
  t.throws(() => loadDaemonConfig(file), { code: 'CONFIG_INVALID', message: /broken\.toml/ })
  t.throws(() => loadDaemonConfig(join(dir, 'missing.toml')), { code: 'CONFIG_UNREADABLE', message: /missing\.toml/ })
})

t.test('vmfront daemon exits 2 naming the file and key', async (t) => {
  const dir = tempDir(t)
  const file = join(dir, 'daemon.toml')
  writeFileSync(file, `data_dir = ${JSON.stringify(join(dir, 'data'))}\nlisten = "127.0.0.1:0"\nbogus_key = 42\n`)
  const run = await runCli(['daemon', '--config', file])
  t.equal(run.code, 2)
  t.match(run.stderr, file)
  t.match(run.stderr, 'bogus_key')
  t.match(run.stderr, '42')
  const usage = await runCli(['daemon', '--nope'])
  t.equal(usage.code, 2)
  t.match(usage.stderr, 'unknown argument')
  const missing = await runCli(['daemon', '--config', join(dir, 'missing.toml')])
  t.equal(missing.code, 2)
  t.match(missing.stderr, 'missing.toml')
})

t.test('the shipped examples are valid', async (t) => {
  const { readdirSync, readFileSync } = await import('node:fs')
  const { parseVmDefinitionText } = await import('../../daemon-adapter/vm-definition.ts')
  const examples = join(import.meta.dirname, '../../examples')
  const daemon = loadDaemonConfig(join(examples, 'daemon.toml'))
  t.equal(daemon.listen.port, 8686)
  const vms = readdirSync(examples).filter((f) => /^vm-.*\.toml$/.test(f))
  t.ok(vms.length >= 2)
  for (const file of vms) {
    const driver = file.includes('libvirt') ? 'libvirt' : 'static'
    t.doesNotThrow(() => parseVmDefinitionText(readFileSync(join(examples, file), 'utf8'), file, { driver, defaultNetwork: 'default' }), file)
  }
})
