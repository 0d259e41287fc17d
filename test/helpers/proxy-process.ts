/**
 * Starts a real `vmfront proxy` child process on loopback with a generated config
 * (ports 0, read back from the start-up log line) and stops it by PID at teardown.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, renameSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

export const ROOT = resolve(fileURLToPath(import.meta.url), '../../..')
export const NODE = process.execPath
export const CLI = join(ROOT, 'proxy/cli.ts')

interface Teardown { teardown (fn: () => unknown): void }

export interface ProxyProcess {
  child: ChildProcess
  dir: string
  routesFile: string
  pidFile: string
  ports: Record<string, number>
  logs: Array<Record<string, unknown>>
  stderr: () => string
  /** Waits for a log line matching `pred` (searching lines from index `from`). */
  waitForLog (pred: (line: Record<string, unknown>) => boolean, timeoutMs?: number, from?: number): Promise<Record<string, unknown>>
  writeRoutes (routes: unknown): void
  /** Sends SIGHUP and waits for the reload's outcome line. */
  reload (): Promise<Record<string, unknown>>
  metrics (): Promise<string>
  /** Sends a signal and waits for exit; resolves to the exit code. */
  stop (signal?: NodeJS.Signals): Promise<number | null>
  exited: Promise<number | null>
}

export interface ProxyOptions {
  routes?: unknown
  /** Extra TOML appended after the generated keys (sections only). */
  toml?: string
  /** Replace the [listen] section. */
  listen?: string
  topLevel?: string
  /** Reuse a data_dir (restarts); default: a fresh one. */
  dataDir?: string
  env?: NodeJS.ProcessEnv
}

export function tempDir (t: Teardown, prefix = 'vmfront-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  return dir
}

export function routesDoc (routes: Array<Record<string, unknown>>): unknown {
  return { version: 1, routes }
}

export async function startProxyProcess (t: Teardown, options: ProxyOptions = {}): Promise<ProxyProcess> {
  const dir = tempDir(t)
  const routesFile = join(dir, 'routes.json')
  const pidFile = join(dir, 'proxy.pid')
  if (options.routes !== undefined) writeFileSync(routesFile, JSON.stringify(options.routes))
  const configFile = join(dir, 'proxy.toml')
  writeFileSync(configFile, [
    `data_dir = ${JSON.stringify(options.dataDir ?? join(dir, 'data'))}`,
    `routes_file = ${JSON.stringify(routesFile)}`,
    `pid_file = ${JSON.stringify(pidFile)}`,
    options.topLevel ?? '',
    options.listen ?? '[listen]\nhttp = "127.0.0.1:0"\nhttps = ""\nadmin = "127.0.0.1:0"',
    options.toml ?? ''
  ].join('\n') + '\n')
  const child = spawn(NODE, [CLI, 'proxy', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...options.env } })
  const logs: Array<Record<string, unknown>> = []
  const waiters = new Set<() => void>()
  let stderr = ''
  let buffer = ''
  child.stdout!.setEncoding('utf8')
  child.stdout!.on('data', (chunk: string) => {
    buffer += chunk
    let nl
    while ((nl = buffer.indexOf('\n')) !== -1) {
      const line = buffer.slice(0, nl)
      buffer = buffer.slice(nl + 1)
      try { logs.push(JSON.parse(line) as Record<string, unknown>) } catch { logs.push({ msg: 'unparsed', line }) }
    }
    for (const w of waiters) w()
  })
  child.stderr!.setEncoding('utf8')
  child.stderr!.on('data', (c: string) => { stderr += c })
  const exited = new Promise<number | null>((resolve) => { child.once('exit', (code) => { for (const w of waiters) w(); resolve(code) }) })
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await exited
    }
  })

  function waitForLog (pred: (line: Record<string, unknown>) => boolean, timeoutMs = 10_000, from = 0): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        for (let i = from; i < logs.length; i++) {
          if (pred(logs[i])) {
            cleanup()
            resolve(logs[i])
            return true
          }
        }
        if (child.exitCode !== null || child.signalCode !== null) {
          cleanup()
          reject(new Error(`proxy exited (${child.exitCode ?? child.signalCode}) before the awaited log line; stderr: ${stderr}`))
          return true
        }
        return false
      }
      const timer = setTimeout(() => { cleanup(); reject(new Error(`timed out waiting for a log line; last lines: ${JSON.stringify(logs.slice(-5))}; stderr: ${stderr}`)) }, timeoutMs)
      const cleanup = (): void => { clearTimeout(timer); waiters.delete(listener) }
      const listener = (): void => { check() }
      waiters.add(listener)
      check()
    })
  }

  const started = await waitForLog((l) => l.msg === 'vmfront proxy started', 15_000)
  const ports = started.listeners as Record<string, number>
  return {
    child,
    dir,
    routesFile,
    pidFile,
    ports,
    logs,
    stderr: () => stderr,
    waitForLog,
    writeRoutes (routes: unknown): void {
      writeFileSync(routesFile + '.tmp', typeof routes === 'string' ? routes : JSON.stringify(routes))
      // rename: the proxy never reads a half-written file
      renameSync(routesFile + '.tmp', routesFile)
    },
    async reload (): Promise<Record<string, unknown>> {
      const from = logs.length
      child.kill('SIGHUP')
      return await waitForLog((l) => l.msg === 'routes loaded' || l.msg === 'route reload failed: still serving the previous table' || l.msg === 'route file unchanged', 10_000, from)
    },
    async metrics (): Promise<string> {
      const res = await fetch(`http://127.0.0.1:${ports.admin}/metrics`)
      return await res.text()
    },
    async stop (signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
      child.kill(signal)
      return await exited
    },
    exited
  }
}

/** Reads one sample's value from Prometheus text ("name{labels}" exact prefix). */
export function metricValue (text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(series + ' ')) return Number(line.slice(series.length + 1))
  }
  return undefined
}
