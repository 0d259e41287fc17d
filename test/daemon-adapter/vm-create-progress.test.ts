// SPEC §13 (feedback on long operations): `vmfront vm create` waits until the VM serves
// (up to the daemon's up_timeout); meanwhile it says on stderr what it waits for and for
// how long, instead of silence. Real daemon, real CLI process, a VM port that starts
// accepting connections only once the first progress line has been seen.
import t from 'tap'
import { spawn } from 'node:child_process'
import { createServer } from 'node:net'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { CLI, NODE, startDaemonProcess, tempDir, writeDaemonConfig } from './daemon-process.ts'
import { deadPort } from '../helpers/backend.ts'

t.test('vm create reports progress on stderr while the VM comes up', async (t) => {
  const dir = tempDir(t)
  const daemon = await startDaemonProcess(t, writeDaemonConfig(dir, '', 'up_probe = "tcp"\nup_timeout = "60s"'))
  const key = readFileSync(join(dir, 'data', 'api-key'), 'utf8').trim()
  const port = await deadPort()
  const file = join(dir, 'slow.toml')
  writeFileSync(file, `name = "slow"\naddress = "127.0.0.1"\ndomains = ["slow.example.com->${port}"]\n`)

  const started = Date.now()
  const child = spawn(NODE, [CLI, 'vm', 'create', file, '--url', daemon.url, '--key', key], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { child.kill('SIGKILL') })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (c: string) => { stdout += c })
  const exited = new Promise<number | null>((resolve) => { child.once('exit', resolve) })
  // The VM "boots" once the CLI has said it is waiting: the first progress line.
  const firstLine = await new Promise<string>((resolve, reject) => {
    child.stderr.setEncoding('utf8').on('data', (c: string) => {
      stderr += c
      if (stderr.includes('\n')) resolve(stderr.slice(0, stderr.indexOf('\n')))
    })
    child.once('exit', () => { reject(new Error(`vm create exited before any progress; stderr: ${stderr}`)) })
    setTimeout(() => { reject(new Error(`no progress line within 10 s; stderr: ${JSON.stringify(stderr)}`)) }, 10_000).unref()
  })
  const waitedMs = Date.now() - started
  t.equal(firstLine, `waiting for VM "slow" r0 at 127.0.0.1 to come up (port ${port} accepting connections): 2 s so far`, 'says what it waits for and how long so far')
  t.ok(waitedMs >= 2000 && waitedMs < 10_000, `the first line comes after about 2 s (${waitedMs} ms)`)

  const vm = createServer((socket) => { socket.destroy() })
  await new Promise<void>((resolve) => vm.listen(port, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => { vm.close(() => { resolve() }) }))
  t.equal(await exited, 0, 'vm create succeeds once the VM accepts connections')
  t.match(stdout, /^created VM "slow" r0 \(active\) at 127\.0\.0\.1/, 'and says so on stdout')
  t.ok(Date.now() - started < 15_000, 'it did not wait for the progress reporter')
  t.notMatch(stderr, /undefined|Error:|    at /, 'no internals in the progress lines')
  // (The other stderr line: no proxy runs here, so none was told to reload.)
  const progress = stderr.trim().split('\n').filter((l) => !l.startsWith('warning: the proxy was not told to reload'))
  t.ok(progress.length >= 1, `${progress.length} progress line(s)`)
  for (const line of progress) t.match(line, /^waiting for VM "slow" r0 at 127\.0\.0\.1 to come up \(port \d+ accepting connections\): \d+ s so far$/, `progress line: ${line}`)
})

t.test('a quick create prints no progress', async (t) => {
  const dir = tempDir(t)
  const daemon = await startDaemonProcess(t, writeDaemonConfig(dir))
  const key = readFileSync(join(dir, 'data', 'api-key'), 'utf8').trim()
  const file = join(dir, 'quick.toml')
  writeFileSync(file, 'name = "quick"\naddress = "127.0.0.1"\ndomains = ["quick.example.com"]\n')
  const child = spawn(NODE, [CLI, 'vm', 'create', file, '--url', daemon.url, '--key', key], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { child.kill('SIGKILL') })
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (c: string) => { stderr += c })
  const started = Date.now()
  t.equal(await new Promise<number | null>((resolve) => { child.once('exit', resolve) }), 0, 'created')
  t.ok(Date.now() - started < 2000, 'at once: the progress timer does not keep the process alive')
  t.notMatch(stderr, /waiting for/, 'no progress line (only the no-proxy warning)')
})
