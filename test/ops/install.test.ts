// SPEC §13 (install as written): the README's production install, run as an operator would on
// a machine whose own Node is older than 22 (Debian 12 ships 20): a clean copy of the tracked
// files, `npm ci --omit=dev` with the machine's npm and Node, then the systemd unit's ExecStart
// (`node_modules/.bin/node proxy/cli.ts proxy --config ...`) serves a request. The install uses
// the local npm cache (--prefer-offline), so it takes seconds; the `node` package's preinstall
// fetches the Node 24 binary package through npm (from the cache when it is there).
import t from 'tap'
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { delimiter, dirname, join } from 'node:path'
import { ROOT, tempDir, routesDoc } from '../helpers/proxy-process.ts'
import { followProcess } from '../helpers/process-logs.ts'
import { rawRequest, startBackend } from '../helpers/backend.ts'

// The operator's PATH: without this checkout's node_modules/.bin (npm test puts Node 24 first).
const PATH = (process.env.PATH ?? '').split(delimiter).filter((p) => !p.includes('node_modules')).join(delimiter)
const env: NodeJS.ProcessEnv = { ...process.env, PATH }
for (const key of Object.keys(env)) if (key.startsWith('npm_') || key === 'NODE_OPTIONS') delete env[key]

function systemNode (): { path: string, version: string } {
  const path = execFileSync('sh', ['-c', 'command -v node'], { env, encoding: 'utf8' }).trim()
  const version = execFileSync(path, ['--version'], { env, encoding: 'utf8' }).trim()
  return { path, version }
}

/** A clean clone's work tree: the tracked files (as they are now), nothing else. */
function cleanCopy (to: string): void {
  const files = execFileSync('git', ['ls-files', '-z'], { cwd: ROOT, encoding: 'utf8' }).split('\0').filter((f) => f !== '')
  for (const file of files) {
    if (!existsSync(join(ROOT, file))) continue
    mkdirSync(dirname(join(to, file)), { recursive: true })
    copyFileSync(join(ROOT, file), join(to, file))
  }
}

t.test('npm ci --omit=dev under the machine\'s Node gives a runnable proxy', async (t) => {
  const sys = systemNode()
  t.comment(`machine's node: ${sys.path} ${sys.version}`)
  const app = join(tempDir(t, 'vmfront-install-'), 'app')
  cleanCopy(app)
  t.notOk(existsSync(join(app, 'node_modules')), 'the copy has no node_modules')

  const started = Date.now()
  const install = spawnSync('npm', ['ci', '--omit=dev', '--prefer-offline', '--no-audit', '--no-fund'], { cwd: app, env, encoding: 'utf8', timeout: 90_000 })
  t.comment(`npm ci --omit=dev took ${Date.now() - started} ms`)
  t.equal(install.status, 0, `npm ci --omit=dev succeeds${install.status === 0 ? '' : ': ' + install.stderr.slice(-2000)}`)

  // The unit's ExecStart binary: the pinned Node survives --omit=dev.
  const node = join(app, 'node_modules/.bin/node')
  t.ok(existsSync(node), 'node_modules/.bin/node exists after --omit=dev')
  const pinned = (JSON.parse(execFileSync('cat', [join(app, 'package.json')], { encoding: 'utf8' })) as { dependencies: Record<string, string> }).dependencies.node
  t.equal(execFileSync(node, ['--version'], { encoding: 'utf8' }).trim(), `v${pinned}`, 'it is the pinned Node')
  t.notOk(existsSync(join(app, 'node_modules/tap')), 'dev dependencies are left out')

  const version = spawnSync(node, ['proxy/cli.ts', '--version'], { cwd: app, encoding: 'utf8' })
  t.equal(version.status, 0, 'proxy/cli.ts --version exits 0')
  t.match(version.stdout, /^vmfront \d+\.\d+\.\d+ .*on Node v24\./, 'and prints the version on the pinned Node')

  // The bin under the machine's Node: one line, exit 1, when that Node cannot strip types.
  const [major, minor] = sys.version.slice(1).split('.').map(Number)
  const launcher = spawnSync(sys.path, ['proxy/cli.js', '--version'], { cwd: app, env, encoding: 'utf8' })
  if (major < 22 || (major === 22 && minor < 18)) {
    t.equal(launcher.status, 1, 'the bin on a too-old Node exits 1')
    t.equal(launcher.stderr, `vmfront needs Node 22.18+ (this is Node ${sys.version}): use node_modules/.bin/node or install Node 24\n`, 'in one line that says what to do')
    t.equal(launcher.stdout, '', 'nothing on stdout')
  } else {
    t.equal(launcher.status, 0, `the machine's Node ${sys.version} runs the bin`)
  }

  // Start it as the unit does and proxy one request.
  const vm = await startBackend(t)
  const dir = tempDir(t)
  writeFileSync(join(dir, 'routes.json'), JSON.stringify(routesDoc([{ domain: 'app.test', target: vm.origin }])))
  writeFileSync(join(dir, 'proxy.toml'), [
    `data_dir = ${JSON.stringify(join(dir, 'data'))}`,
    `routes_file = ${JSON.stringify(join(dir, 'routes.json'))}`,
    `pid_file = ${JSON.stringify(join(dir, 'proxy.pid'))}`,
    '[listen]', 'http = "127.0.0.1:0"', 'https = ""', 'admin = "127.0.0.1:0"'
  ].join('\n') + '\n')
  const child = spawn(node, [join(app, 'proxy/cli.ts'), 'proxy', '--config', join(dir, 'proxy.toml')], { cwd: app, env, stdio: ['ignore', 'pipe', 'pipe'] })
  const proxy = followProcess(t, child, 'installed proxy')
  const ports = (await proxy.waitForLog((l) => l.msg === 'vmfront proxy started', 15_000)).listeners as Record<string, number>
  const res = await rawRequest(ports.http, 'GET /hello HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n')
  t.match(res.data, /^HTTP\/1\.1 200 /, 'a routed request is served')
  t.equal(vm.requests.at(-1)?.url, '/hello', 'by the VM')
  const healthz = await fetch(`http://127.0.0.1:${ports.admin}/healthz`)
  t.equal(healthz.status, 200, '/healthz answers on the admin listener')
  await healthz.text()
  t.equal(await proxy.stop('SIGTERM'), 0, 'SIGTERM drains and exits 0')
})
