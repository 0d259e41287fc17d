// Issue 9 point 5: a dump that cannot be written (SIGUSR2 or /debug/dump while the disk is full)
// fails with a reason in words and leaves nothing in data_dir, not even a temporary file. The
// disk is "full" through `ulimit -f 1` (writes past 1 KiB fail with EFBIG), which works for any
// user; the real ENOSPC case on a full tmpfs is in test/adversarial/disk-full.test.ts.
import { mkdirSync, statSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import { join } from 'node:path'
import t from 'tap'
import { listFiles, startProxyWithConfig } from '../helpers/disk-full.ts'
import { startBackend } from '../helpers/backend.ts'
import { pollUntil } from '../helpers/pebble.ts'
import { tempDir } from '../helpers/proxy-process.ts'

t.test('a failed dump leaves no temporary file and says why', async (t) => {
  const dir = tempDir(t)
  const dataDir = join(dir, 'data')
  mkdirSync(dataDir, { mode: 0o700 })
  // A VM that holds every request: the dump lists them, which makes it larger than the limit.
  const held: Array<() => void> = []
  const vm = await startBackend(t, (_req, res) => { held.push(() => { res.end() }) })
  t.teardown(() => { for (const release of held) release() })
  const routes = join(dir, 'routes.json')
  writeFileSync(routes, JSON.stringify({ version: 1, routes: [{ domain: 'held.test', target: vm.origin }] }))
  const proxy = await startProxyWithConfig(t, join(dir, 'proxy.toml'), [
    `data_dir = ${JSON.stringify(dataDir)}`,
    `routes_file = ${JSON.stringify(routes)}`,
    `pid_file = ${JSON.stringify(join(dir, 'proxy.pid'))}`, // a few bytes: under the limit
    '[listen]\nhttp = "127.0.0.1:0"\nhttps = ""\nadmin = "127.0.0.1:0"'
  ].join('\n') + '\n', { fileSizeLimitKb: 1 })
  const inFlight = Array.from({ length: 12 }, () => new Promise<void>((resolve) => {
    const req = http.get({ host: '127.0.0.1', port: proxy.ports.http, path: `/slow/${'x'.repeat(100)}`, headers: { host: 'held.test' }, agent: false }, (res) => { res.resume(); res.on('close', resolve) })
    req.on('error', () => { resolve() })
  }))
  t.teardown(async () => { for (const release of held) release(); await Promise.all(inFlight) })
  await pollUntil(() => held.length === inFlight.length, 10_000, 'requests held by the VM')

  const res = await fetch(`http://127.0.0.1:${proxy.ports.admin}/debug/dump`)
  const body = await res.json() as { error?: string }
  t.equal(res.status, 500, '/debug/dump fails')
  t.match(body.error, /^cannot write the diagnostic dump to .*\/data\/dump-[^/]+\.json: file too large$/, 'in words, naming the file')
  t.same(listFiles(dataDir), [], 'nothing left in data_dir after /debug/dump')

  const from = proxy.logs.length
  proxy.child.kill('SIGUSR2')
  const line = await proxy.waitForLog((l) => l.msg === 'diagnostic dump failed', 10_000, from)
  t.match(JSON.stringify(line), /file too large/, 'SIGUSR2: the failure is logged with its reason')
  t.same(listFiles(dataDir), [], 'nothing left in data_dir after SIGUSR2')
  t.equal(statSync(dataDir).mode & 0o777, 0o700)
  for (const release of held.splice(0)) release()
  await Promise.all(inFlight)
  t.equal(await proxy.stop(), 0, 'still running, stops cleanly')
})
