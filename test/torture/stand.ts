/**
 * @module test/torture/stand
 * The system under attack, fresh for every attack: a real `vmfront proxy` process
 * (test/helpers/proxy-process.ts) with HTTP, HTTPS (self-signed fallback, ACME off)
 * and admin listeners on 127.0.0.1, in front of one VM process (vm-process.ts).
 * Also how the proxy is measured: RSS, fds, its connections to the VM (`ss`, any
 * state but TIME-WAIT) and,
 * after a forced GC, its heap.
 */
import { execFile } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import http2 from 'node:http2'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { startProxyProcess, routesDoc } from '../helpers/proxy-process.ts'
import { webSocketRoundTrip } from '../helpers/backend.ts'
import { pollUntil } from '../helpers/pebble.ts'
import { httpGet } from '../bench/proc.ts'
import { connectInspector } from './inspector.ts'
import { forkScript, track } from './ipc.ts'
import type { Sample, Stand, TortureTimeouts, VmStats } from './types.ts'

const run = promisify(execFile)

/** Short timeouts so that, once an attack stops, a healthy proxy is back to rest within seconds. */
export const TIMEOUTS: TortureTimeouts = {
  connect: 2000,
  upstreamResponse: 5000,
  upstreamIdle: 5000,
  requestHeaders: 3000,
  clientIdle: 5000,
  websocketIdle: 5000,
  keepAlive: 1000
}
const DRAIN_MS = 3000

/**
 * The proxy config of the torture stand (appended to the generated one). Everything
 * else keeps its default, `upstream.max_connections_per_target` (256) included, so the
 * attacks meet the limits a default install has. No access log: the runner reads
 * the proxy's stdout, and a soak would fill it.
 */
// One serving process: the stand measures its fds, sockets and heap (through its
// inspector); with workers those would be spread over processes it does not watch.
export const TORTURE_TOML = `
[server]
workers = 1

[timeouts]
connect = "${TIMEOUTS.connect}ms"
upstream_response = "${TIMEOUTS.upstreamResponse}ms"
upstream_idle = "${TIMEOUTS.upstreamIdle}ms"
request_headers = "${TIMEOUTS.requestHeaders}ms"
client_idle = "${TIMEOUTS.clientIdle}ms"
websocket_idle = "${TIMEOUTS.websocketIdle}ms"
drain = "${DRAIN_MS}ms"

[upstream]
keepalive = "${TIMEOUTS.keepAlive}ms"

[log]
access = false

[[rate_profile]]
name = "flood"
concurrent_max_requests = 2
concurrent_overflow_timeout = "500ms"
limit_burst_requests = 4
limit_requests_per_second = 2
limit_max_delay = "500ms"
`

/** Fds that may come and go at rest (a log file reopened, a timer fd) without being a leak. */
export const FD_TOLERANCE = 2

interface Teardown { teardown (fn: () => unknown): void }

/** Collects teardown steps (the `t.teardown` of test/helpers) and runs them newest first. */
export function createTeardowns (): Teardown & { run (): Promise<void> } {
  const steps: Array<() => unknown> = []
  return {
    teardown (fn) { steps.push(fn) },
    async run () {
      while (steps.length > 0) {
        try { await steps.pop()?.() } catch { /* keep tearing down */ }
      }
    }
  }
}

function readRssKiB (pid: number): number {
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return match === null ? Number.NaN : Number(match[1])
}

let ssMissing = false

/**
 * TCP connections to `port` that a process still holds, in any state but TIME-WAIT
 * (established, half-closed, closing), by state, and how many hold unread bytes;
 * from `ss`, or undefined without it. A socket the proxy has closed while the VM
 * keeps its side open (FIN-WAIT-2 with no owner) is the kernel's, not the proxy's:
 * it holds no fd and ends at net.ipv4.tcp_fin_timeout; it is counted apart as
 * `orphans` in the states, not as held.
 */
async function connectionsTo (port: number): Promise<{ count: number, unread: number, states: Record<string, number> } | undefined> {
  if (ssMissing) return undefined
  let stdout: string
  try {
    ({ stdout } = await run('ss', ['-tnpH', 'state', 'connected', 'exclude', 'time-wait', `( dport = :${port} )`]))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') { ssMissing = true; return undefined }
    throw err
  }
  let count = 0
  let unread = 0
  const states: Record<string, number> = {}
  for (const line of stdout.split('\n')) {
    const [state, recvQ] = line.trim().split(/\s+/)
    if (recvQ === undefined) continue
    if (!line.includes('users:(')) {
      states.orphans = (states.orphans ?? 0) + 1
      continue
    }
    count++
    states[state] = (states[state] ?? 0) + 1
    if (Number(recvQ) > 0) unread++
  }
  return { count, unread, states }
}

async function startVm (t: Teardown): Promise<Stand['vm']> {
  const forked = forkScript(join(import.meta.dirname, 'vm-process.ts'), 'the VM')
  t.teardown(() => forked.kill())
  const { port } = await forked.next<{ type: string, port: number }>('ready')
  let id = 0
  return {
    port,
    origin: `http://127.0.0.1:${port}`,
    async stats () { return (await forked.ask<{ type: string, stats: VmStats }>({ type: 'stats', id: ++id }, 'stats')).stats },
    async reset () { await forked.ask({ type: 'reset', id: ++id }, 'reset') }
  }
}

/** One HTTP/2 GET over the https listener (self-signed fallback), for the warm-up. */
function h2Get (port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`https://127.0.0.1:${port}`, { servername: host, rejectUnauthorized: false })
    const timer = setTimeout(() => { session.destroy(); reject(new Error('h2 warm-up timed out')) }, 10_000)
    session.on('error', (err) => { clearTimeout(timer); reject(err) })
    const stream = session.request({ ':path': '/', ':authority': host })
    let status = 0
    stream.on('response', (h) => { status = Number(h[':status']) })
    stream.resume()
    stream.on('end', () => { clearTimeout(timer); session.close(); resolve(status) })
    stream.on('error', (err) => { clearTimeout(timer); session.destroy(); reject(err) })
  })
}

export const HOST = 'torture.test'
export const LIMITED_HOST = 'flood.test'

/**
 * Starts a VM and a proxy in front of it, warms every path an attack uses (HTTP,
 * /big, WebSocket, HTTP/2 over TLS) so lazy start-up costs are not counted as
 * growth, and waits until the proxy holds no connection to the VM.
 */
export async function startStand (t: Teardown): Promise<Stand & { stop (): Promise<{ exit: number | string | null, ms: number }> }> {
  const vm = await startVm(t)
  const baseRoutes = routesDoc([
    { domain: HOST, target: vm.origin, vm: 'torture' },
    { domain: LIMITED_HOST, target: vm.origin, vm: 'torture', rate_profile: 'flood' },
    { domain: `www.${HOST}`, redirect_to: HOST, redirect_code: 301 }
  ]) as Stand['baseRoutes']
  const proxy = await startProxyProcess(t, {
    routes: baseRoutes,
    listen: '[listen]\nhttp = "127.0.0.1:0"\nhttps = "127.0.0.1:0"\nadmin = "127.0.0.1:0"',
    toml: TORTURE_TOML,
    // An inspector on loopback (port 0) lets sample({ gc: true }) force a GC: see inspector.ts.
    env: { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --inspect=127.0.0.1:0`.trim() }
  })
  track(proxy.child)
  const inspector = await connectInspector(proxy.stderr)
  t.teardown(() => { inspector.close() })
  const pid = proxy.child.pid
  if (pid === undefined) throw new Error('the proxy process has no pid')
  const ports = { http: proxy.ports.http, https: proxy.ports.https, admin: proxy.ports.admin }

  const sample = async (options: { gc?: boolean } = {}): Promise<Sample> => {
    const heap = options.gc === true ? await inspector.heapAfterGc() : {}
    const conns = await connectionsTo(vm.port) ?? { count: (await vm.stats()).connections, unread: -1, states: {} }
    return { rssKiB: readRssKiB(pid), fds: readdirSync(`/proc/${pid}/fd`).length, upstream: conns.count, upstreamWithUnread: conns.unread, upstreamStates: conns.states, ...heap }
  }

  const warm = await httpGet(`http://127.0.0.1:${ports.http}/`, HOST)
  if (warm.status !== 200) throw new Error(`warm-up GET answered ${warm.status}, not 200`)
  await httpGet(`http://127.0.0.1:${ports.http}/big?mb=1`, HOST)
  const ws = await webSocketRoundTrip(ports.http, HOST, 'warm-up')
  if (ws.echo !== 'echo:warm-up') throw new Error(`warm-up WebSocket got ${JSON.stringify(ws.head.split('\r\n')[0])}`)
  const h2 = await h2Get(ports.https, HOST)
  if (h2 !== 200) throw new Error(`warm-up HTTP/2 GET answered ${h2}, not 200`)
  await pollUntil(async () => (await sample()).upstream === 0, TIMEOUTS.keepAlive + 5000, 'the proxy to close its idle connections to the VM').catch(() => {})
  await vm.reset()

  return {
    proxy,
    pid,
    ports,
    vm,
    host: HOST,
    limitedHost: LIMITED_HOST,
    baseRoutes,
    sample,
    async status () {
      const res = await fetch(`http://127.0.0.1:${ports.admin}/status`, { signal: AbortSignal.timeout(5000) })
      return await res.json() as Record<string, unknown>
    },
    async stop () {
      // An attached inspector session would keep the process waiting for it at exit.
      inspector.close()
      const started = Date.now()
      if (proxy.child.exitCode !== null || proxy.child.signalCode !== null) return { exit: await proxy.exited, ms: 0 }
      proxy.child.kill('SIGTERM')
      const grace = DRAIN_MS + 10_000
      let timer: NodeJS.Timeout | undefined
      const exit = await Promise.race([proxy.exited, new Promise<'hung'>((resolve) => { timer = setTimeout(() => { resolve('hung') }, grace) })])
      clearTimeout(timer)
      if (exit === 'hung') {
        proxy.child.kill('SIGKILL')
        await proxy.exited
        return { exit: `no exit within ${grace / 1000} s of SIGTERM (killed)`, ms: Date.now() - started }
      }
      return { exit, ms: Date.now() - started }
    }
  }
}

/**
 * Waits (polling, at most `budgetMs`) until the proxy is back to its `before` state:
 * no more connections to the VM and no more fds than before (within FD_TOLERANCE).
 * Resolves with a final sample taken after a full GC, settled or not.
 */
export async function settle (stand: Stand, before: Sample, budgetMs: number): Promise<{ sample: Sample, settled: boolean, ms: number }> {
  const started = Date.now()
  const rested = async (): Promise<boolean> => {
    const s = await stand.sample()
    return s.upstream <= before.upstream && s.fds <= before.fds + FD_TOLERANCE
  }
  let settled = true
  await pollUntil(rested, budgetMs, 'the proxy to settle').catch(() => { settled = false })
  const ms = Date.now() - started
  return { sample: await stand.sample({ gc: true }), settled, ms }
}
