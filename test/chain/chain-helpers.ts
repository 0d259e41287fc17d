/**
 * Shared pieces of the chain tests: an in-memory logger, a chain config, and
 * real parent/child proxy processes on loopback with pre-chosen free ports (a
 * child's child_url must name its own http listener before it starts).
 */
import { request } from 'undici'
import { createLogger, type Logger } from '../../proxy/log.ts'
import { deadPort } from '../helpers/backend.ts'
import { startProxyProcess, type ProxyProcess } from '../helpers/proxy-process.ts'
import { followProcess } from '../helpers/process-logs.ts'

interface Teardown { teardown (fn: () => unknown): void }

export const PSK = 'test-chain-psk-0123456789'

/** Short keepalive and lease timings, so healing is seen within a test. */
export const FAST: Record<string, string | number> = { lease_ttl: '2s', ping_interval: '200ms', ping_timeout: '300ms', connect_timeout: '500ms' }

/**
 * Processes per test proxy: 1 unless said (a chain test is about the chain; the
 * worker tests say `workers: 2`). VMFRONT_TEST_CHAIN_WORKERS=2 runs every chain
 * test's proxies with workers, to check nothing depends on one process.
 */
const DEFAULT_WORKERS = Number(process.env.VMFRONT_TEST_CHAIN_WORKERS ?? 1)

function serverSection (workers: number | undefined): string {
  return `[server]\nworkers = ${workers ?? DEFAULT_WORKERS}\n`
}

/** The `[chain]` timing keys: FAST with `overrides` (numbers are written as TOML numbers). */
export function timings (overrides: Record<string, string | number> = {}): string {
  return Object.entries({ ...FAST, ...overrides }).map(([k, v]) => `${k} = ${JSON.stringify(v)}\n`).join('')
}

/** A logger whose lines land in `lines`. */
export function memoryLogger (): { logger: Logger, lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = []
  const logger = createLogger({ level: 'debug', sink: { write (line: string) { lines.push(JSON.parse(line) as Record<string, unknown>) }, flush () {} } })
  return { logger, lines }
}

export interface ParentOptions {
  apiPort?: number
  toml?: string
  routes?: unknown
  chain?: Record<string, string | number>
  /** Replace the [listen] section (default: http and admin on free ports, no https). */
  listen?: string
  /** `[server] workers` (default 1, see DEFAULT_WORKERS). */
  workers?: number
}

/** Starts a parent proxy; its chain API listens on `apiPort` (free port by default). */
export async function startParent (t: Teardown, options: ParentOptions = {}): Promise<ProxyProcess & { apiPort: number, api: string }> {
  const apiPort = options.apiPort ?? await deadPort()
  const proxy = await startProxyProcess(t, {
    routes: options.routes,
    listen: options.listen,
    toml: `${serverSection(options.workers)}[chain]\nmode = "parent"\nparent_url = "http://127.0.0.1:${apiPort}"\npsk = "${PSK}"\n${timings(options.chain)}${options.toml ?? ''}`
  })
  return Object.assign(proxy, { apiPort, api: `http://127.0.0.1:${apiPort}/chain/v1` })
}

export interface ChildOptions {
  apiPort: number
  name: string
  routes: unknown
  port?: number
  psk?: string
  toml?: string
  chain?: Record<string, string | number>
  /** Where the parent is told to send our traffic (default: our own listener, e.g. a relay in front of it instead). */
  childUrl?: string
  /** Also an https listener on a free port (self-signed fallback certificate). */
  https?: boolean
  /** `[server] workers` (default 1, see DEFAULT_WORKERS). */
  workers?: number
}

/** Starts a child proxy serving h2c and HTTP/1.1 on `port` (free port by default), registering at the parent. */
export async function startChild (t: Teardown, options: ChildOptions): Promise<ProxyProcess & { port: number }> {
  const port = options.port ?? await deadPort()
  const proxy = await startProxyProcess(t, {
    routes: options.routes,
    listen: `[listen]\nhttp = "127.0.0.1:${port}"\nhttps = "${options.https === true ? '127.0.0.1:0' : ''}"\nadmin = "127.0.0.1:0"`,
    toml: `${serverSection(options.workers)}[chain]\nmode = "child"\nparent_url = "http://127.0.0.1:${options.apiPort}"\nchild_url = "${options.childUrl ?? `http://127.0.0.1:${port}`}"\nname = "${options.name}"\npsk = "${options.psk ?? PSK}"\n${timings(options.chain)}${options.toml ?? ''}`
  })
  return Object.assign(proxy, { port })
}

/** Calls the chain API; resolves with status and parsed JSON. */
export async function api (url: string, path: string, body: unknown, psk: string | null = PSK): Promise<{ status: number, body: any }> {
  const res = await request(`${url}/${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { 'content-type': 'application/json', ...(psk === null ? {} : { authorization: `Bearer ${psk}` }) },
    body: body === undefined ? undefined : JSON.stringify(body)
  })
  return { status: res.statusCode, body: await res.body.json() }
}

/** GET through a proxy with a Host header. */
export async function get (port: number, host: string, path = '/', headers: Record<string, string> = {}, timeoutMs = 5000): Promise<{ status: number, headers: Record<string, unknown>, body: string, ms: number }> {
  const start = performance.now()
  const res = await request(`http://127.0.0.1:${port}${path}`, { headers: { host, ...headers }, headersTimeout: timeoutMs, bodyTimeout: timeoutMs })
  const body = await res.body.text()
  return { status: res.statusCode, headers: res.headers, body, ms: performance.now() - start }
}

/** Polls `fn` every 50 ms until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function until<T> (what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const value = await fn()
      if (value !== undefined) return value
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last === undefined ? '' : `: ${(last as Error).message}`}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** The parent's /status chain section. */
export async function chainStatus (proxy: ProxyProcess): Promise<any> {
  const res = await request(`http://127.0.0.1:${proxy.ports.admin}/status`)
  return ((await res.body.json()) as { chain: unknown }).chain
}

/**
 * A TCP relay that can "freeze" like a SIGSTOPped process: connections are
 * still accepted (the kernel's backlog does that for a stopped process), but no
 * byte moves in either direction until `thaw()`.
 */
export interface FreezableRelay {
  port: number
  freeze (): void
  thaw (): void
  /** Connections accepted so far. */
  accepted (): number
  close (): Promise<void>
}

export async function startRelay (t: Teardown, targetPort: number): Promise<FreezableRelay> {
  const net = await import('node:net')
  type Socket = import('node:net').Socket
  let frozen = false
  let accepted = 0
  const pairs = new Set<{ d: Socket, u: Socket, piped: boolean }>()
  const link = (p: { d: Socket, u: Socket, piped: boolean }): void => { p.d.pipe(p.u); p.u.pipe(p.d); p.piped = true }
  const unlink = (p: { d: Socket, u: Socket, piped: boolean }): void => {
    // unpipe, not only pause: pipe() resumes a paused source on the next drain.
    p.d.unpipe(p.u); p.u.unpipe(p.d); p.d.pause(); p.u.pause(); p.piped = false
  }
  const server = net.createServer((downstream) => {
    accepted++
    const pair = { d: downstream, u: net.connect(targetPort, '127.0.0.1'), piped: false }
    pairs.add(pair)
    if (frozen) { pair.d.pause(); pair.u.pause() } else link(pair)
    const end = (): void => { pairs.delete(pair); pair.d.destroy(); pair.u.destroy() }
    for (const s of [pair.d, pair.u]) { s.on('error', end); s.on('close', end) }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as import('node:net').AddressInfo).port
  const relay: FreezableRelay = {
    port,
    freeze (): void {
      frozen = true
      for (const p of pairs) if (p.piped) unlink(p)
    },
    thaw (): void {
      frozen = false
      for (const p of pairs) if (!p.piped) link(p)
    },
    accepted: () => accepted,
    close: () => new Promise<void>((resolve) => {
      for (const p of pairs) { p.d.destroy(); p.u.destroy() }
      server.close(() => { resolve() })
    })
  }
  t.teardown(() => relay.close())
  return relay
}

/**
 * Starts `vmfront proxy` again on the config of a stopped process (same data_dir,
 * ports as configured): for restart tests. Killed by PID at teardown.
 */
export async function respawn (t: Teardown, previous: ProxyProcess): Promise<{ ports: Record<string, number>, logs: Array<Record<string, unknown>>, waitForLog: ProxyProcess['waitForLog'], stop: ProxyProcess['stop'] }> {
  const { spawn } = await import('node:child_process')
  const { join } = await import('node:path')
  const { NODE, CLI } = await import('../helpers/proxy-process.ts')
  const child = spawn(NODE, [CLI, 'proxy', '--config', join(previous.dir, 'proxy.toml')], { stdio: ['ignore', 'pipe', 'pipe'] })
  const { logs, waitForLog, stop } = followProcess(t, child, 'proxy')
  const started = await waitForLog((l) => l.msg === 'vmfront proxy started', 15_000)
  return {
    ports: started.listeners as Record<string, number>,
    logs,
    waitForLog,
    stop
  }
}
