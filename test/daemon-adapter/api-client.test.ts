/**
 * The daemon API and the `vmfront vm` client end to end: a real daemon process, the
 * real bin, API keys generated 0600 and checked, JSON errors, exit statuses.
 */
import t from 'tap'
import { createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createKeyChecker, hashKey, loadApiKeys, readClientKey } from '../../daemon-adapter/api-keys.ts'
import { spawn } from 'node:child_process'
import { CLI, NODE, runCli, runVm, startDaemonProcess, tempDir, until, writeDaemonConfig } from './daemon-process.ts'

async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}

t.test('API keys: generated 0600 once, hashed entries, constant-time check', async (t) => {
  const dir = tempDir(t)
  const first = loadApiKeys('', dir)
  t.equal(first.generated, join(dir, 'api-key'))
  t.equal(statSync(join(dir, 'api-key')).mode & 0o777, 0o600)
  const key = readFileSync(join(dir, 'api-key'), 'utf8').trim()
  t.ok(key.length >= 40)
  const again = loadApiKeys('', dir)
  t.equal(again.generated, undefined, 'kept across restarts')
  t.ok(createKeyChecker(again.hashes).verify(key))
  t.equal(createKeyChecker(again.hashes).verify(key + 'x'), false)

  const file = join(dir, 'keys')
  writeFileSync(file, `# operators\nsha256:${hashKey('hashed-key-0123456789').toString('hex')}\nplain-key-0123456789\n\n`)
  const loaded = loadApiKeys(file, dir)
  const checker = createKeyChecker(loaded.hashes)
  t.equal(checker.count, 2)
  t.ok(checker.verify('hashed-key-0123456789'), 'a key stored only as its hash works')
  t.ok(checker.verify('plain-key-0123456789'))
  t.notOk(checker.verify('other'))
  t.equal(readClientKey(file, dir), 'plain-key-0123456789', 'the client can only use a plain key')
  writeFileSync(file, 'short\n')
  t.throws(() => loadApiKeys(file, dir), { code: 'CONFIG_INVALID', message: /line 1/ })
})

t.test('daemon + vm client end to end', async (t) => {
  const dir = tempDir(t)
  const port = await freePort()
  const configFile = writeDaemonConfig(dir, '', '')
  // A fixed port so that `vm --config` can find the daemon from its config.
  writeFileSync(configFile, readFileSync(configFile, 'utf8').replace('listen = "127.0.0.1:0"', `listen = "127.0.0.1:${port}"`))
  const daemon = await startDaemonProcess(t, configFile)
  t.equal(daemon.url, `http://127.0.0.1:${port}`)
  t.equal(statSync(join(dir, 'data')).mode & 0o777, 0o700, 'data_dir created 0700')
  t.equal(statSync(join(dir, 'data', 'api-key')).mode & 0o777, 0o600, 'api-key 0600')
  const key = readFileSync(join(dir, 'data', 'api-key'), 'utf8').trim()

  // Raw API: health without a key, everything else needs one.
  t.same(await (await fetch(`${daemon.url}/healthz`)).json(), { status: 'ok' })
  const anonymous = await fetch(`${daemon.url}/v1/vms`)
  t.equal(anonymous.status, 401)
  t.match(await anonymous.json(), { error: { code: 'UNAUTHORIZED', message: /missing API key/ } })
  const wrong = await fetch(`${daemon.url}/v1/vms`, { headers: { authorization: 'Bearer not-the-key' } })
  t.equal(wrong.status, 401)
  t.match(await wrong.json(), { error: { code: 'UNAUTHORIZED', message: 'invalid API key' } })

  const appFile = join(dir, 'app.toml')
  writeFileSync(appFile, `name = "app"\naddress = "127.0.0.1"\ndomains = ['app.example.com->8080', 'b.example.com']\nredirects = [['www.app.example.com', 'app.example.com', '301']]\n`)

  // --url/--key after the subcommand.
  const created = await runCli(['vm', 'create', appFile, '--url', daemon.url, '--key', key])
  t.equal(created.code, 0, created.stderr)
  t.match(created.stdout, 'created VM "app" r0 (active) at 127.0.0.1')
  t.match(created.stderr, /not told to reload: .*proxy\.pid does not exist/, 'a missing PID file is reported, not fatal')
  const routes = JSON.parse(readFileSync(join(dir, 'routes.json'), 'utf8'))
  t.equal(routes.routes.length, 3)

  // --url/--key before the subcommand.
  const list = await runCli(['vm', '--url', daemon.url, '--key', key, 'list'])
  t.equal(list.code, 0)
  t.match(list.stdout, /^app\tr0\tactive\t-\t127\.0\.0\.1\tapp\.example\.com,b\.example\.com,www\.app\.example\.com\n$/)
  // From the environment.
  const env = { VMFRONT_URL: daemon.url, VMFRONT_KEY: key }
  const json = await runCli(['vm', 'list', '--json'], env)
  t.match(JSON.parse(json.stdout), [{ name: 'app', revision: 0, state: 'active', locked: false, domains: ['app.example.com', 'b.example.com', 'www.app.example.com'] }])
  // From the local daemon's config.
  const viaConfig = await runCli(['vm', '--config', configFile, 'info', 'app'])
  t.equal(viaConfig.code, 0, viaConfig.stderr)
  t.match(viaConfig.stdout, /name: +app/)
  t.match(viaConfig.stdout, /www\.app\.example\.com -> app\.example\.com \(301\)/)
  const viaConfigEnv = await runVm(['vm', 'list'], { VMFRONT_DAEMON_CONFIG: configFile })
  t.match(viaConfigEnv.stdout, /^app\t/)
  const badKey = await runVm(['vm', 'list', '--url', daemon.url, '--key', 'nope'])
  t.equal(badKey.code, 1)
  t.match(badKey.stderr, 'invalid API key')

  // Invalid input exits 2 and names the key; a conflict exits 1 and names domain and owner.
  const badFile = join(dir, 'bad.toml')
  writeFileSync(badFile, 'name = "bad"\naddress = "127.0.0.1"\ndomains = ["bad.example.com->99999"]\n')
  const bad = await runCli(['vm', 'create', badFile], env)
  t.equal(bad.code, 2)
  t.match(bad.stderr, /bad\.toml: domains\[0\]: "bad\.example\.com->99999": the port must be 1-65535/)
  const missingFile = await runVm(['vm', 'create', join(dir, 'nope.toml')], env)
  t.equal(missingFile.code, 2)
  t.match(missingFile.stderr, 'nope.toml')
  const clashFile = join(dir, 'clash.toml')
  writeFileSync(clashFile, 'name = "clash"\naddress = "127.0.0.2"\ndomains = ["clash.example.com", "b.example.com"]\n')
  const clash = await runCli(['vm', 'create', clashFile], env)
  t.equal(clash.code, 1)
  t.match(clash.stderr, 'b.example.com is already claimed by VM "app"')
  const dup = await runVm(['vm', 'create', appFile], env)
  t.equal(dup.code, 1)
  t.match(dup.stderr, 'already exists')
  const usage = await runVm(['vm', 'frobnicate'], env)
  t.equal(usage.code, 2)
  const noName = await runVm(['vm', 'info'], env)
  t.equal(noName.code, 2)
  const unknown = await runVm(['vm', 'info', 'ghost'], env)
  t.equal(unknown.code, 1)
  t.match(unknown.stderr, 'no VM named "ghost"')

  // JSON body through the raw API.
  const apiCreate = await fetch(`${daemon.url}/v1/vms`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'json', address: '127.0.0.3', domains: ['json.example.com->3000'] })
  })
  t.equal(apiCreate.status, 201)
  t.match(await apiCreate.json(), { vm: { name: 'json', revision: 0, address: '127.0.0.3' }, routes: { count: 4, written: true, reload: { status: 'no-pid-file' } } })
  const apiBad = await fetch(`${daemon.url}/v1/vms`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'x-vmfront-file': 'x.toml' }, body: 'name = "x"\naddress = "h"\nfoo = 1\n' })
  t.equal(apiBad.status, 400)
  t.match(await apiBad.json(), { error: { code: 'VM_INVALID', message: /x\.toml: foo/, file: 'x.toml', problems: [{ key: 'foo' }] } })

  // Locks.
  const lock = await runVm(['vm', 'lock', 'app'], env)
  t.equal(lock.code, 0)
  t.match(lock.stdout, 'VM "app" locked')
  const lockedDelete = await runVm(['vm', 'delete', 'app', '--force'], env)
  t.equal(lockedDelete.code, 1)
  t.match(lockedDelete.stderr, 'locked')
  const lockedRebuild = await runVm(['vm', 'rebuild', 'app'], env)
  t.equal(lockedRebuild.code, 1)
  t.match(lockedRebuild.stderr, 'locked')
  t.match(JSON.parse((await runVm(['vm', 'info', 'app', '--json'], env)).stdout), { locked: true, revision: 0 })
  t.equal((await runVm(['vm', 'unlock', 'app'], env)).code, 0)

  // Rebuild from the current definition, then from a new file.
  const rebuilt = await runVm(['vm', 'rebuild', 'app'], env)
  t.equal(rebuilt.code, 0, rebuilt.stderr)
  t.match(rebuilt.stdout, 'rebuilt VM "app" r1 (active)')
  writeFileSync(appFile, `name = "app"\naddress = "127.0.0.9"\ndomains = ['app.example.com->8081']\n`)
  const moved = await runVm(['vm', 'rebuild', 'app', appFile], env)
  t.equal(moved.code, 0, moved.stderr)
  const info = JSON.parse((await runVm(['vm', 'info', 'app', '--json'], env)).stdout)
  t.match(info, { revision: 2, address: '127.0.0.9', domains: ['app.example.com'] })
  t.same(info.revisions.map((r: { number: number }) => r.number), [2], 'old revisions retired and deleted')
  const table = JSON.parse(readFileSync(join(dir, 'routes.json'), 'utf8'))
  t.same(table.routes.map((r: { domain: string }) => r.domain), ['app.example.com', 'json.example.com'], 'b.example.com and the redirect went with r1')
  t.equal((await runCli(['vm', 'create', clashFile], env)).code, 0, 'b.example.com is free again')
  const otherName = join(dir, 'other.toml')
  writeFileSync(otherName, 'name = "other"\naddress = "127.0.0.1"\n')
  const mismatch = await runVm(['vm', 'rebuild', 'app', otherName], env)
  t.equal(mismatch.code, 2)
  t.match(mismatch.stderr, 'not "app"')

  // Delete: no TTY and no --force is refused with exit 2.
  const unconfirmed = await runVm(['vm', 'delete', 'app'], env)
  t.equal(unconfirmed.code, 2)
  t.match(unconfirmed.stderr, '--force')
  t.equal((await runVm(['vm', 'info', 'app'], env)).code, 0, 'still there')
  const deleted = await runVm(['vm', 'delete', 'app', '--force'], env)
  t.equal(deleted.code, 0, deleted.stderr)
  t.match(deleted.stdout, 'deleted VM "app"')
  t.notMatch(readFileSync(join(dir, 'routes.json'), 'utf8'), 'app.example.com')
  t.equal((await runVm(['vm', 'info', 'app'], env)).code, 1)

  // Delete on a terminal asks first (a pty from util-linux `script`).
  const onTty = async (answer: string): Promise<{ code: number | null, out: string }> => {
    const q = (s: string): string => `'${s.replaceAll("'", "'\\''")}'`
    const command = [NODE, CLI, 'vm', 'delete', 'json', '--url', daemon.url, '--key', key].map(q).join(' ')
    const child = spawn('script', ['-qec', command, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.setEncoding('utf8').on('data', (c: string) => { out += c })
    child.stdin.end(answer + '\n')
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
    return { code, out }
  }
  const declined = await onTty('n')
  t.match(declined.out, 'Delete VM "json" (json.example.com)? Its routes go at once. [y/N]')
  t.match(declined.out, 'not deleted')
  t.equal(declined.code, 1)
  t.equal((await runVm(['vm', 'info', 'json'], env)).code, 0, 'still there after "n"')
  const confirmed = await onTty('y')
  t.equal(confirmed.code, 0, confirmed.out)
  t.match(confirmed.out, 'deleted VM "json"')
  t.equal((await runVm(['vm', 'info', 'json'], env)).code, 1, 'gone after "y"')

  // SIGHUP to the daemon rewrites the route file from the registry (here: a removed
  // one; a file someone else wrote is never overwritten, see route-file-ownership).
  rmSync(join(dir, 'routes.json'))
  daemon.child.kill('SIGHUP')
  await until('the route file is rewritten', () => existsSync(join(dir, 'routes.json')) && readFileSync(join(dir, 'routes.json'), 'utf8').includes('clash.example.com'), 5000)

  // Restart: the registry persisted.
  t.equal(await daemon.stop('SIGTERM'), 0, 'SIGTERM stops the daemon with exit 0')
  const again = await startDaemonProcess(t, configFile)
  const after = await runVm(['vm', 'list'], { VMFRONT_URL: again.url, VMFRONT_KEY: key })
  t.same(after.stdout.split('\n').filter(Boolean).map((l) => l.split('\t')[0]), ['clash'])
})
