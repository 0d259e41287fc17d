/**
 * @module test/torture/ipc
 * Forks the torture's helper processes (the VM, the normal client) with an IPC
 * channel and asks them questions with a bounded wait; keeps every child the runner
 * starts so an exit, however it happens, kills them by PID.
 */
import { fork, type ChildProcess } from 'node:child_process'

const live = new Set<ChildProcess>()

/** Adds a child started elsewhere (the proxy, slowhttptest) to those killed at exit. */
export function track (child: ChildProcess): void {
  live.add(child)
  child.once('exit', () => live.delete(child))
}

/** Kills (SIGKILL, by PID) every tracked child still running; for exit handlers. */
export function killChildren (): void {
  for (const child of live) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  }
  live.clear()
}

export interface Forked {
  child: ChildProcess
  /** Sends `msg` and resolves with the first message of type `reply` (rejects after `timeoutMs`). */
  ask<T extends { type: string }> (msg: object, reply: string, timeoutMs?: number): Promise<T>
  /** Waits for the next message of type `type`. */
  next<T extends { type: string }> (type: string, timeoutMs?: number): Promise<T>
  kill (): Promise<void>
}

/** Forks a .ts module with the runner's Node (24, which runs .ts natively). */
export function forkScript (file: string, what: string): Forked {
  const child = fork(file, [], { execPath: process.execPath, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  track(child)
  const next = <T extends { type: string }>(type: string, timeoutMs = 10_000): Promise<T> => new Promise((resolve, reject) => {
    const onMessage = (msg: T): void => {
      if (msg?.type !== type) return
      cleanup()
      resolve(msg)
    }
    const onExit = (code: number | null, signal: string | null): void => { cleanup(); reject(new Error(`${what} exited (${code ?? signal}) while waiting for "${type}"`)) }
    const timer = setTimeout(() => { cleanup(); reject(new Error(`${what} did not answer "${type}" within ${timeoutMs} ms`)) }, timeoutMs)
    const cleanup = (): void => { clearTimeout(timer); child.off('message', onMessage); child.off('exit', onExit) }
    child.on('message', onMessage)
    child.once('exit', onExit)
  })
  const ask = <T extends { type: string }>(msg: object, reply: string, timeoutMs?: number): Promise<T> => {
    // Listen first: the answer may come back before send() returns.
    const answer = next<T>(reply, timeoutMs)
    child.send(msg)
    return answer
  }
  return {
    child,
    next,
    ask,
    async kill () {
      if (child.exitCode !== null || child.signalCode !== null) return
      const exited = new Promise<void>((resolve) => child.once('exit', () => { resolve() }))
      child.kill('SIGKILL')
      await exited
    }
  }
}
