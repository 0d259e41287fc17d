/**
 * @module test/daemon-adapter/daemon-process
 * Test helpers: a real `vmfront daemon` child process (spawned through the real bin,
 * proxy/cli.ts), the `vmfront vm` client run as a process, temp folders and config
 * files. Every process is killed at teardown.
 */
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { followProcess } from '../helpers/process-logs.ts'

export const ROOT = resolve(fileURLToPath(import.meta.url), '../../..')
export const NODE = process.execPath
export const CLI = join(ROOT, 'proxy/cli.ts')

interface Teardown { teardown (fn: () => unknown): void }

/** A temp folder removed at teardown. */
export function tempDir (t: Teardown, prefix = 'vmfront-daemon-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  return dir
}

/** Writes a daemon config into `dir` (static driver, port 0, fast debounce) plus `extra` TOML lines. */
export function writeDaemonConfig (dir: string, extra = '', top = ''): string {
  const file = join(dir, 'daemon.toml')
  writeFileSync(file, [
    `data_dir = ${JSON.stringify(join(dir, 'data'))}`,
    `routes_file = ${JSON.stringify(join(dir, 'routes.json'))}`,
    `proxy_pid_file = ${JSON.stringify(join(dir, 'proxy.pid'))}`,
    'listen = "127.0.0.1:0"',
    'reload_debounce = "50ms"',
    'retire_drain = "0s"',
    top,
    extra
  ].join('\n') + '\n')
  return file
}

export interface DaemonProcess {
  child: ChildProcess
  url: string
  logs: Record<string, unknown>[]
  stderr: () => string
  waitForLog (pred: (line: Record<string, unknown>) => boolean, timeoutMs?: number, from?: number): Promise<Record<string, unknown>>
  /** Sends a signal and resolves with the exit code (or signal name). */
  stop (signal?: NodeJS.Signals): Promise<number | string | null>
  exited: Promise<number | string | null>
}

/** Spawns `vmfront daemon --config FILE` and waits for its "listening" log line. */
export async function startDaemonProcess (t: Teardown, configFile: string, env: NodeJS.ProcessEnv = {}): Promise<DaemonProcess> {
  const child = spawn(NODE, [CLI, 'daemon', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } })
  const followed = followProcess(t, child, 'daemon')
  const { logs, waitForLog } = followed

  const listening = await waitForLog((l) => l.msg === 'daemon API listening', 15_000)
  return {
    child,
    url: listening.url as string,
    logs,
    stderr: followed.stderr,
    waitForLog,
    stop: followed.stop,
    exited: followed.exited
  }
}

export interface CliResult {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs `vmfront ARGS` to completion (stdin closed, so not a TTY). */
export function runCli (args: readonly string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 30_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const cleanEnv = { ...process.env, ...env }
    for (const key of ['VMFRONT_URL', 'VMFRONT_KEY', 'VMFRONT_DAEMON_CONFIG']) if (env[key] === undefined) delete cleanEnv[key]
    const child = spawn(NODE, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: cleanEnv })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (c: string) => { stdout += c })
    child.stderr.setEncoding('utf8').on('data', (c: string) => { stderr += c })
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`vmfront ${args.join(' ')} timed out; stderr: ${stderr}`)) }, timeoutMs)
    child.once('exit', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }) })
  })
}

/** Polls `fn` until it returns true, every `intervalMs`, failing after `timeoutMs`. */
export async function until (what: string, fn: () => boolean | Promise<boolean>, timeoutMs = 10_000, intervalMs = 25): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}

/**
 * Runs `vmfront vm ARGS` in this process through the same entry point the bin uses
 * (runCommand), with captured streams, a non-TTY stdin and only `env` as environment:
 * the same behaviour as runCli without the cost of a process per call. `args`
 * start with "vm", as for runCli.
 */
export async function runVm (args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  if (args[0] !== 'vm') throw new Error('runVm runs vm subcommands only')
  const { runCommand } = await import('../../daemon-adapter/cli.ts')
  const { PassThrough } = await import('node:stream')
  const stdout = new PassThrough()
  const stderr = new PassThrough()
  let out = ''
  let err = ''
  stdout.setEncoding('utf8').on('data', (c: string) => { out += c })
  stderr.setEncoding('utf8').on('data', (c: string) => { err += c })
  const stdin = Object.assign(new PassThrough(), { isTTY: false })
  const code = await runCommand('vm', args.slice(1), { stdout, stderr, stdin, env })
  return { code, stdout: out, stderr: err }
}
