/**
 * Starts a real `vmfront proxy` child process on loopback with a generated config
 * (ports 0, read back from the start-up log line) and stops it by PID at teardown.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, renameSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { followProcess, type FollowedProcess } from './process-logs.ts'

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
  waitForLog: FollowedProcess['waitForLog']
  writeRoutes (routes: unknown): void
  /** Sends SIGHUP and waits for the reload's outcome line. */
  reload (): Promise<Record<string, unknown>>
  metrics (): Promise<string>
  stop: FollowedProcess['stop']
  exited: FollowedProcess['exited']
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
  /** Runs once the files are written, just before the process starts (e.g. to make the route file a FIFO). */
  beforeStart?: (paths: { dir: string, routesFile: string }) => void
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
  if (options.routes !== undefined) writeFileSync(routesFile, typeof options.routes === 'string' ? options.routes : JSON.stringify(options.routes))
  const configFile = join(dir, 'proxy.toml')
  writeFileSync(configFile, [
    `data_dir = ${JSON.stringify(options.dataDir ?? join(dir, 'data'))}`,
    `routes_file = ${JSON.stringify(routesFile)}`,
    `pid_file = ${JSON.stringify(pidFile)}`,
    options.topLevel ?? '',
    options.listen ?? '[listen]\nhttp = "127.0.0.1:0"\nhttps = ""\nadmin = "127.0.0.1:0"',
    options.toml ?? ''
  ].join('\n') + '\n')
  options.beforeStart?.({ dir, routesFile })
  const child = spawn(NODE, [CLI, 'proxy', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...options.env } })
  const followed = followProcess(t, child, 'proxy')
  const { logs, waitForLog } = followed

  const started = await waitForLog((l) => l.msg === 'vmfront proxy started', 15_000)
  const ports = started.listeners as Record<string, number>
  return {
    child,
    dir,
    routesFile,
    pidFile,
    ports,
    logs,
    stderr: followed.stderr,
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
    stop: followed.stop,
    exited: followed.exited
  }
}

/** Reads one sample's value from Prometheus text ("name{labels}" exact prefix). */
export function metricValue (text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(series + ' ')) return Number(line.slice(series.length + 1))
  }
  return undefined
}
