// SPEC §13: log.file writes the app and access logs to a file, reopened on SIGUSR1
// (logrotate's postrotate convention). A real proxy process, a real rotation.
import t from 'tap'
import { spawn } from 'node:child_process'
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { startBackend, rawRequest } from '../helpers/backend.ts'
import { CLI, NODE, tempDir, routesDoc, startProxyProcess } from '../helpers/proxy-process.ts'
import { followProcess } from '../helpers/process-logs.ts'
import { pollUntil } from '../helpers/pebble.ts'

type Line = Record<string, unknown>
function lines (file: string): Line[] {
  if (!existsSync(file)) return []
  return readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').map((l) => {
    try { return JSON.parse(l) as Line } catch { return { msg: 'unparsed', line: l } }
  })
}
async function waitForLine (file: string, pred: (l: Line) => boolean, what: string): Promise<Line> {
  let found: Line | undefined
  await pollUntil(() => (found = lines(file).find(pred)) !== undefined, 10_000, `${what} in ${file}`)
  return found!
}

t.test('logs go to log.file; SIGUSR1 reopens it after a rotation', async (t) => {
  const vm = await startBackend(t)
  const dir = tempDir(t)
  const logFile = join(dir, 'proxy.log')
  const configFile = join(dir, 'proxy.toml')
  writeFileSync(join(dir, 'routes.json'), JSON.stringify(routesDoc([{ domain: 'app.test', target: vm.origin }])))
  writeFileSync(configFile, [
    `data_dir = ${JSON.stringify(join(dir, 'data'))}`,
    'routes_file = "routes.json"',
    `pid_file = ${JSON.stringify(join(dir, 'proxy.pid'))}`,
    '[listen]\nhttp = "127.0.0.1:0"\nhttps = ""\nadmin = "127.0.0.1:0"',
    // relative to the config file, like the other paths
    '[log]\nfile = "proxy.log"'
  ].join('\n') + '\n')
  const child = spawn(NODE, [CLI, 'proxy', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] })
  const proc = followProcess(t, child, 'proxy')

  const started = await waitForLine(logFile, (l) => l.msg === 'vmfront proxy started', 'the start-up line')
  const port = (started.listeners as Record<string, number>).http
  const announced = await proc.waitForLog((l) => l.file === logFile)
  t.match(announced.msg, /log\.file/, 'stdout says where the logs go')

  t.match((await rawRequest(port, 'GET /before HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n')).data, /^HTTP\/1\.1 200 /)
  await waitForLine(logFile, (l) => l.msg === 'access' && l.path === '/before', 'the first access line')

  // logrotate: rename, then the postrotate signal.
  renameSync(logFile, logFile + '.1')
  child.kill('SIGUSR1')
  await waitForLine(logFile, (l) => l.msg === 'log file reopened', 'the reopen line')
  t.match((await rawRequest(port, 'GET /after HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n')).data, /^HTTP\/1\.1 200 /)
  await waitForLine(logFile, (l) => l.msg === 'access' && l.path === '/after', 'the access line after the rotation')

  const rotated = lines(logFile + '.1')
  t.ok(rotated.some((l) => l.path === '/before'), 'the rotated file keeps the old lines')
  t.notOk(rotated.some((l) => l.path === '/after'), 'no new line goes to the rotated file')
  t.equal(proc.logs.length, 1, 'nothing else on stdout')

  t.equal(await proc.stop('SIGTERM'), 0)
  t.ok(lines(logFile).some((l) => l.msg === 'stopped'), 'the exit is logged in the file too')
})

t.test('an unwritable log.file stops the start with one clear line (exit 2)', async (t) => {
  const dir = tempDir(t)
  const configFile = join(dir, 'proxy.toml')
  const missing = join(dir, 'no-such-dir', 'proxy.log')
  writeFileSync(configFile, `data_dir = ${JSON.stringify(join(dir, 'data'))}\nroutes_file = ${JSON.stringify(join(dir, 'routes.json'))}\npid_file = ${JSON.stringify(join(dir, 'proxy.pid'))}\n[listen]\nhttp = "127.0.0.1:0"\nhttps = ""\nadmin = ""\n[log]\nfile = ${JSON.stringify(missing)}\n`)
  const child = spawn(NODE, [CLI, 'proxy', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] })
  const proc = followProcess(t, child, 'proxy')
  t.equal(await proc.exited, 2)
  t.equal(proc.stderr().trim(), `vmfront proxy: log.file: cannot open ${missing} for appending: ENOENT`)
})

t.test('SIGUSR1 without log.file is harmless (no debugger opened, still serving)', async (t) => {
  const vm = await startBackend(t)
  const proxy = await startProxyProcess(t, { routes: routesDoc([{ domain: 'app.test', target: vm.origin }]) })
  proxy.child.kill('SIGUSR1')
  // A request after the signal is answered and logged: the process is alive and unchanged.
  t.match((await rawRequest(proxy.ports.http, 'GET /usr1 HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n')).data, /^HTTP\/1\.1 200 /)
  await proxy.waitForLog((l) => l.msg === 'access' && l.path === '/usr1')
  t.notMatch(proxy.stderr(), /Debugger listening/, 'the inspector did not start')
})

t.test('a log file that cannot grow loses lines, not the proxy; the loss is counted after the rotation', async (t) => {
  const vm = await startBackend(t)
  const dir = tempDir(t)
  const logFile = join(dir, 'proxy.log')
  const configFile = join(dir, 'proxy.toml')
  writeFileSync(join(dir, 'routes.json'), JSON.stringify(routesDoc([{ domain: 'app.test', target: vm.origin }])))
  writeFileSync(configFile, `data_dir = "data"\nroutes_file = "routes.json"\npid_file = "proxy.pid"\n[listen]\nhttp = "127.0.0.1:0"\nhttps = ""\nadmin = ""\n[log]\nfile = "proxy.log"\n`)
  // Under `ulimit -f 16` (16 KiB per file), writing past it fails with EFBIG (SIGXFSZ ignored,
  // and without tap's NODE_OPTIONS hook, which would re-raise it: see test/helpers/disk-full.ts).
  const child = spawn('bash', ['-c', 'trap \'\' XFSZ && ulimit -f 16 && unset NODE_OPTIONS && exec "$0" "$@"', NODE, CLI, 'proxy', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] })
  followProcess(t, child, 'proxy')
  const started = await waitForLine(logFile, (l) => l.msg === 'vmfront proxy started', 'the start-up line')
  const port = (started.listeners as Record<string, number>).http

  // About 300 bytes a line: 100 requests are well past 16 KiB.
  for (let i = 0; i < 100; i++) {
    const res = await rawRequest(port, `GET /fill-${i} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n`)
    t.match(res.data, /^HTTP\/1\.1 200 /, `request ${i} served`, { diagnostic: false })
  }
  const full = lines(logFile)
  const written = full.filter((l) => l.msg === 'access').length
  t.ok(written > 0 && written < 100, `only ${written} of 100 access lines fit`)
  t.ok(full.filter((l) => l.msg === 'unparsed').length <= 1, 'at most the line cut by the limit is garbled')

  renameSync(logFile, logFile + '.1')
  child.kill('SIGUSR1')
  const lost = await waitForLine(logFile, (l) => l.msg === 'log lines lost: the log file could not be written', 'the loss count')
  t.equal(lost.reason, 'EFBIG')
  // Each serving process (each worker, SPEC §12) counts the lines it lost.
  const lostLines = (): number => lines(logFile).filter((l) => l.msg === 'log lines lost: the log file could not be written').reduce((n, l) => n + (l.lost as number), 0)
  await pollUntil(() => lostLines() >= 100 - written, 10_000, 'every process\'s loss count')
  t.ok(lostLines() >= 100 - written, `the lost lines are counted (${lostLines()})`)
  await waitForLine(logFile, (l) => l.msg === 'log file reopened', 'the reopen line')
  t.equal(child.exitCode, null, 'still running')
})
