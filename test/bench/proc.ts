/**
 * @module test/bench/proc
 * Child-process helpers for the benchmark: free loopback ports, processes pinned to
 * a core, bounded waits until a server answers, and cleanup by PID on every exit path.
 */
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { openSync, closeSync, readFileSync } from 'node:fs'
import { request } from 'node:http'
import { createServer } from 'node:net'
import { availableParallelism } from 'node:os'

/** Every process started here and still alive, so an exit can kill them by PID. */
const live = new Set<ChildProcess>()

/** Adds a child started elsewhere (wrk) to the set killed on exit. */
export function track (child: ChildProcess): void {
  live.add(child)
  child.once('exit', () => live.delete(child))
  child.once('error', () => live.delete(child))
}

/** Kills every live child synchronously; safe to call more than once. */
export function killAll (): void {
  for (const child of live) {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try { process.kill(child.pid, 'SIGKILL') } catch {}
    }
  }
  live.clear()
}

/**
 * Installs exit, Ctrl-C and SIGTERM handlers that kill every child started here,
 * then run `cleanup` (synchronous: it runs inside the exit handler).
 */
export function killChildrenOnExit (cleanup: () => void): void {
  process.on('exit', () => { killAll(); cleanup() })
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      process.stderr.write(`\nbench: ${signal}, stopping children\n`)
      process.exit(130)
    })
  }
}

/** A port that was free on 127.0.0.1 a moment ago (the OS picks it). */
export function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => {
        if (address !== null && typeof address === 'object') resolve(address.port)
        else reject(new Error('no port'))
      })
    })
  })
}

/** True when the machine has a second core to pin the proxies to (wrk gets core 0). */
export const canPin = availableParallelism() >= 2

export interface StartOptions {
  cmd: string
  args: string[]
  /** Pins the process to this core with taskset when the machine has two cores. */
  core?: number
  /** stdout and stderr go to this file (read back on failure). */
  logFile: string
  env?: NodeJS.ProcessEnv
  cwd?: string
}

export interface Proc {
  child: ChildProcess
  logFile: string
  /** SIGTERM, then SIGKILL if still alive after `graceMs`; resolves once it exited. */
  stop (graceMs?: number): Promise<void>
}

/** Starts a process in the foreground of our process group, logging to a file. */
export function startProcess (opts: StartOptions): Proc {
  const pinned = opts.core !== undefined && canPin
  const cmd = pinned ? 'taskset' : opts.cmd
  const args = pinned ? ['-c', String(opts.core), opts.cmd, ...opts.args] : opts.args
  const fd = openSync(opts.logFile, 'a')
  const child = spawn(cmd, args, { stdio: ['ignore', fd, fd], env: opts.env ?? process.env, cwd: opts.cwd })
  closeSync(fd)
  track(child)
  return { child, logFile: opts.logFile, stop: (graceMs = 3000) => stopChild(child, graceMs) }
}

function exited (child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null || child.pid === undefined
}

function stopChild (child: ChildProcess, graceMs: number): Promise<void> {
  if (exited(child)) { live.delete(child); return Promise.resolve() }
  return new Promise((resolve) => {
    const timer = setTimeout(() => { try { process.kill(child.pid!, 'SIGKILL') } catch {} }, graceMs)
    child.once('exit', () => { clearTimeout(timer); live.delete(child); resolve() })
    try { process.kill(child.pid!, 'SIGTERM') } catch { clearTimeout(timer); resolve() }
  })
}

/** The last `lines` lines of a log file, for failure messages. */
export function tail (file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
  } catch {
    return '(no log)'
  }
}

export interface Probe { status: number, body: string }

/** One GET without keep-alive; resolves with the status and the whole body as text. */
export function httpGet (url: string, host: string | undefined): Promise<Probe> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false, headers: host === undefined ? {} : { host }, timeout: 1000 }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { body += chunk })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error('probe timed out')))
    req.on('error', reject)
    req.end()
  })
}

/**
 * Polls `url` (with `host` as the Host header) every 50 ms until it answers 200 with
 * the backend's "ok" body, for at most `timeoutMs`. Fails at once if a proc exits.
 */
export async function waitForOk (url: string, host: string | undefined, procs: Proc[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let last = 'no answer'
  while (Date.now() < deadline) {
    const dead = procs.find((proc) => exited(proc.child))
    if (dead !== undefined) {
      const log = tail(dead.logFile)
      throw new Error(`exited with ${dead.child.exitCode ?? dead.child.signalCode} before answering: ${log.split('\n').at(-1)}\n${log}`)
    }
    try {
      const { status, body } = await httpGet(url, host)
      if (status === 200 && body.trim() === 'ok') return
      last = `answered ${status} ${JSON.stringify(body.slice(0, 40))}`
    } catch (err) {
      last = (err as Error).message
    }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error(`no "ok" answer within ${timeoutMs} ms (last: ${last})` +
    procs.map((proc) => `\n${tail(proc.logFile, 5)}`).join(''))
}

/** True while every proc is still running. */
export function allAlive (procs: Proc[]): boolean {
  return procs.every((proc) => !exited(proc.child))
}
