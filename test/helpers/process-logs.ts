/**
 * Follows a spawned vmfront process: collects its JSON log lines, waits for one
 * matching a predicate (bounded), and kills it by PID at teardown.
 */
import type { ChildProcess } from 'node:child_process'

interface Teardown { teardown (fn: () => unknown): void }

export type LogLine = Record<string, unknown>

export interface FollowedProcess {
  logs: LogLine[]
  stderr: () => string
  /** Waits for a log line matching `pred`, searching from index `from`; rejects on exit or timeout. */
  waitForLog (pred: (line: LogLine) => boolean, timeoutMs?: number, from?: number): Promise<LogLine>
  /** Sends a signal and resolves with the exit code (or the signal's name). */
  stop (signal?: NodeJS.Signals): Promise<number | string | null>
  /** The exit code, or the signal's name when killed by one. */
  exited: Promise<number | string | null>
}

export function followProcess (t: Teardown, child: ChildProcess, what: string): FollowedProcess {
  const logs: LogLine[] = []
  const waiters = new Set<() => void>()
  let stderr = ''
  let buffer = ''
  child.stdout?.setEncoding('utf8')
  child.stdout?.on('data', (chunk: string) => {
    buffer += chunk
    let nl
    while ((nl = buffer.indexOf('\n')) !== -1) {
      const line = buffer.slice(0, nl)
      buffer = buffer.slice(nl + 1)
      try { logs.push(JSON.parse(line) as LogLine) } catch { logs.push({ msg: 'unparsed', line }) }
    }
    for (const w of waiters) w()
  })
  child.stderr?.setEncoding('utf8')
  child.stderr?.on('data', (c: string) => { stderr += c })
  const exited = new Promise<number | string | null>((resolve) => {
    child.once('exit', (code, signal) => {
      for (const w of waiters) w()
      resolve(code ?? signal)
    })
  })
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await exited
    }
  })

  function waitForLog (pred: (line: LogLine) => boolean, timeoutMs = 10_000, from = 0): Promise<LogLine> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        for (let i = from; i < logs.length; i++) {
          if (pred(logs[i])) {
            cleanup()
            resolve(logs[i])
            return
          }
        }
        if (child.exitCode !== null || child.signalCode !== null) {
          cleanup()
          reject(new Error(`${what} exited (${child.exitCode ?? child.signalCode}) before the awaited log line; stderr: ${stderr}`))
        }
      }
      const timer = setTimeout(() => { cleanup(); reject(new Error(`timed out waiting for a ${what} log line; last lines: ${JSON.stringify(logs.slice(-5))}; stderr: ${stderr}`)) }, timeoutMs)
      const cleanup = (): void => { clearTimeout(timer); waiters.delete(check) }
      waiters.add(check)
      check()
    })
  }

  return {
    logs,
    stderr: () => stderr,
    waitForLog,
    async stop (signal: NodeJS.Signals = 'SIGTERM') {
      child.kill(signal)
      return await exited
    },
    exited
  }
}
