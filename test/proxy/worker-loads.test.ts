/**
 * What a worker process loads (SPEC §12, issue 10's memory goals): not Node's TypeScript
 * stripper (its primary hands it the stripped sources, proxy/worker-sources.ts), and not
 * the modules only the primary uses (node-forge, acme-client, the admin's hono), nor
 * undici's fetch and WebSocket (the forwarder uses its Agent alone), nor Node's bundled
 * undici (pulled in by an ESM import of node:http): each megabytes per worker. Read from
 * real processes by a probe preloaded into each of them.
 */
import t from 'tap'
import http from 'node:http'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { startBackend } from '../helpers/backend.ts'
import { ROOT, routesDoc, startProxyProcess, tempDir, type ProxyProcess } from '../helpers/proxy-process.ts'
import { pollUntil } from '../helpers/pebble.ts'

interface ProbeReport { entry: string, loaded: string[], internal: string[] }

async function workerPids (proxy: ProxyProcess): Promise<Array<{ pid: number, role: string }>> {
  const res = await fetch(`http://127.0.0.1:${proxy.ports.admin}/status`)
  return ((await res.json()) as { workers: Array<{ pid: number, role: string }> }).workers.filter((w) => w.role.startsWith('worker'))
}

function get (port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/', headers: { host }, agent: false }, (res) => {
      res.resume()
      res.on('end', () => { resolve(res.statusCode ?? 0) })
    }).on('error', reject)
  })
}

t.test('workers load neither the TypeScript stripper nor the primary-only modules', async (t) => {
  const probeDir = tempDir(t, 'vmfront-load-probe-')
  const vm = await startBackend(t, (_req, res) => { res.end('ok') })
  const proxy = await startProxyProcess(t, {
    routes: routesDoc([{ domain: 'app.test', target: vm.origin }]),
    toml: '[server]\nworkers = 2',
    env: { NODE_OPTIONS: `--import ${join(ROOT, 'test/fixtures/worker-load-probe.mjs')}`, VMFRONT_LOAD_PROBE_DIR: probeDir }
  })
  for (let i = 0; i < 20; i++) t.equal(await get(proxy.ports.http, 'app.test'), 200, 'served by a worker')
  // A replacement after kill -9 starts the same way (it writes no report; its replacement does).
  const [victim] = await workerPids(proxy)
  process.kill(victim.pid, 'SIGKILL')
  let replacement = 0
  await pollUntil(async () => {
    const now = await workerPids(proxy)
    replacement = now.find((w) => w.role === victim.role && w.pid !== victim.pid)?.pid ?? 0
    return replacement !== 0 && now.every((w) => !w.role.includes('starting'))
  }, 10_000, 'the replacement worker serving')
  for (let i = 0; i < 10; i++) t.equal(await get(proxy.ports.http, 'app.test'), 200, 'served')
  t.equal(await proxy.stop(), 0, 'stopped cleanly')
  t.notMatch(proxy.stderr(), /Warning/, 'stripping for the workers printed no (Experimental)Warning')

  const reports = readdirSync(probeDir).map((f) => JSON.parse(readFileSync(join(probeDir, f), 'utf8')) as ProbeReport)
  const primary = reports.filter((r) => r.entry.endsWith('proxy/cli.ts'))
  const workers = reports.filter((r) => !r.entry.endsWith('proxy/cli.ts'))
  t.equal(workers.length, 2, 'both workers reported')
  t.ok(readdirSync(probeDir).includes(`${replacement}.json`), 'the replacement among them')
  t.equal(primary.length, 1, 'the primary reported')
  t.ok(primary[0].internal.some((m) => m.includes('amaro')), 'the probe sees the stripper where it is loaded (the primary)')
  for (const w of workers) {
    t.same(w.internal.filter((m) => m.includes('amaro')), [], 'no TypeScript stripper (amaro) in a worker')
    // An ESM import of node:http builds its namespace, which loads Node's bundled undici (for http.WebSocket).
    t.same(w.internal.filter((m) => m.includes('internal/deps/undici')), [], 'no Node-bundled undici in a worker (node:http not imported as ESM)')
    t.same(w.loaded.filter((u) => u.endsWith('.ts')), [], 'no .ts module left to Node\'s own loading')
    t.ok(w.loaded.some((u) => u.includes('/node_modules/undici/')), 'the probe sees the worker\'s own loading (undici)')
    t.same(w.loaded.filter((u) => /\/node_modules\/undici\/(index\.js|lib\/web\/)/.test(u)), [], 'undici\'s Agent only: not its index, fetch or WebSocket')
    for (const name of ['node-forge', 'acme-client', 'hono', '@hono']) {
      t.same(w.loaded.filter((u) => u.includes(`/node_modules/${name}/`)), [], `no ${name} in a worker`)
    }
  }
})
