/**
 * @module proxy/worker-pool
 * The primary's workers (SPEC §12): N processes that serve requests on the
 * listening sockets the primary bound and handed to each of them. They share one
 * accept queue per listener (the same socket, not SO_REUSEPORT copies), so a worker
 * that dies takes only its own connections, and nothing queued is lost: the
 * others go on accepting from the same queue. A dead worker is replaced at once
 * (a worker that keeps dying within a second of its start is restarted with a
 * growing delay, up to 5 s, so a broken build cannot spin a core).
 *
 * Processes, not threads: a worker that crashes, leaks or is killed by the kernel
 * takes nothing else with it, each gets its own heap and garbage collector, and an
 * operator sees (and can kill -9) each one. What must be one is kept in the
 * primary and reached over IPC (rate limits, ACME); see the README for figures.
 */
import type { ChildProcess } from 'node:child_process'
import { createIpcPeer, type IpcPeer } from './worker-ipc.ts'
import { createWorkerForker } from './worker-sources.ts'
import type { Logger } from './log.ts'

/** A worker that exits sooner than this after its start counts as crash-looping. */
const EARLY_EXIT_MS = 1000
const MAX_RESTART_DELAY_MS = 5000
const START_TIMEOUT_MS = 60_000

export interface WorkerSlot {
  readonly slot: number
  pid: number
  startedAt: number
  restarts: number
  ready: boolean
  peer: IpcPeer
  child: ChildProcess
}

export interface WorkerPoolOptions {
  count: number
  /** What a worker needs to load the same configuration (argv of `vmfront proxy`). */
  configArgs: readonly string[]
  /** Listening sockets by listener name, handed to every worker. */
  handles: ReadonlyMap<string, unknown>
  logger: Logger
  /** Called for each new worker before it starts: wire the primary's services to it. */
  attach: (peer: IpcPeer, slot: number) => { detach: () => void }
  onRestart: () => void
}

export interface WorkerPool {
  /** Resolves once every worker serves. Rejects if one cannot start. */
  start (): Promise<void>
  slots (): readonly WorkerSlot[]
  broadcast (op: string, body?: unknown): void
  /** Asks every ready worker; a worker that does not answer in time is left out. */
  gather<T>(op: string, body?: unknown, timeoutMs?: number): Promise<Array<{ slot: number, pid: number, value: T }>>
  /** Tells every worker to drain; resolves once each has stopped accepting (or is gone). */
  beginStop (reason: string): Promise<void>
  /** Kills every worker now (a second stop signal). */
  kill (): void
  /**
   * Drains every worker (SIGTERM semantics) and resolves once all have exited; one
   * still running `killAfterMs` later (a drain of `timeouts.drain` plus a margin) is killed.
   */
  stop (reason: string, killAfterMs?: number): Promise<void>
  readonly handles: ReadonlyMap<string, unknown>
  /**
   * `[server] workers` changed on SIGHUP: starts the missing slots, or drains the
   * highest ones (their requests finish, they are not replaced).
   */
  resize (count: number): void
}

export function createWorkerPool (options: WorkerPoolOptions): WorkerPool {
  const slots: WorkerSlot[] = []
  let stopping = false
  let wanted = options.count
  const log = options.logger
  // Forks workers without the TypeScript stripper (worker-sources.ts).
  const forker = createWorkerForker()

  function spawn (slot: number, restarts: number): Promise<void> {
    const child = forker.fork(options.configArgs, { ...process.env, VMFRONT_WORKER_SLOT: String(slot) })
    const peer = createIpcPeer(child)
    const entry: WorkerSlot = { slot, pid: child.pid ?? 0, startedAt: Date.now(), restarts, ready: false, peer, child }
    slots[slot] = entry
    const { detach } = options.attach(peer, slot)
    let settle!: { resolve: () => void, reject: (e: Error) => void }
    const ready = new Promise<void>((resolve, reject) => { settle = { resolve, reject } })
    // A worker that neither serves nor fails (a hung start) must not hold the primary's start forever.
    const startTimer = setTimeout(() => { settle.reject(new Error(`worker ${slot} did not start within ${START_TIMEOUT_MS / 1000} s`)); child.kill('SIGKILL') }, START_TIMEOUT_MS)
    startTimer.unref()
    peer.handle('ready', () => {
      clearTimeout(startTimer)
      entry.ready = true
      settle.resolve()
    })
    peer.handle('fatal', (body) => { settle.reject(new Error(String(body))) })
    child.once('exit', (code, signal) => {
      clearTimeout(startTimer)
      detach()
      peer.close()
      entry.ready = false
      settle.reject(new Error(`worker ${slot} exited (${signal ?? `code ${String(code)}`}) before it served`))
      if (stopping || slot >= wanted) {
        // A slot above the count: it drained because the count went down. Not replaced.
        if (slots[slot] === entry && slot >= wanted) delete slots[slot]
        return
      }
      const lived = Date.now() - entry.startedAt
      const delay = lived >= EARLY_EXIT_MS ? 0 : Math.min(MAX_RESTART_DELAY_MS, 100 * 2 ** Math.min(6, restarts))
      log.error('worker exited: replacing it', { worker: slot, pid: entry.pid, code, signal, lived_ms: lived, restart_in_ms: delay })
      options.onRestart()
      const again = (): void => {
        if (stopping || slot >= wanted) return
        spawn(slot, restarts + 1).catch((err: unknown) => { log.error('replacement worker failed to start', { worker: slot, reason: (err as Error).message }) })
      }
      if (delay === 0) again()
      else setTimeout(again, delay).unref()
    })
    // Each listening socket, then go: the worker loads its config and listens.
    const sends = [...options.handles].map(async ([name, handle]) => { await peer.sendHandle('listen', { name }, handle) })
    void Promise.all(sends).then(() => { peer.notify('start', { slot }) }, (err: unknown) => { settle.reject(err as Error) })
    return ready
  }

  return {
    handles: options.handles,
    async start () {
      await Promise.all(Array.from({ length: options.count }, async (_, i) => { await spawn(i, 0) }))
    },
    slots: () => slots.filter((s) => s !== undefined),
    resize (count) {
      if (stopping || count === wanted || count < 1) return
      const before = wanted
      wanted = count
      log.info('workers count changed', { from: before, to: count })
      for (let i = before; i < count; i++) {
        spawn(i, 0).catch((err: unknown) => { log.error('new worker failed to start', { worker: i, reason: (err as Error).message }) })
      }
      for (let i = count; i < before; i++) {
        const s = slots[i]
        if (s !== undefined && s.child.connected) s.peer.notify('shutdown', 'workers count lowered')
      }
    },
    broadcast (op, body) {
      for (const s of slots) if (s !== undefined && s.child.connected) s.peer.notify(op, body)
    },
    async gather<T>(op: string, body?: unknown, timeoutMs = 2000) {
      const answers = await Promise.all(slots.filter((s) => s?.ready).map(async (s): Promise<{ slot: number, pid: number, value: T } | undefined> => {
        try {
          return { slot: s.slot, pid: s.pid, value: await s.peer.request<T>(op, body, timeoutMs) }
        } catch (err) {
          log.debug('a worker did not answer', { worker: s.slot, op, reason: (err as Error).message })
          return undefined
        }
      }))
      return answers.filter((a): a is { slot: number, pid: number, value: T } => a !== undefined)
    },
    async beginStop (reason) {
      stopping = true
      await Promise.all(slots.filter((s) => s !== undefined && s.child.exitCode === null && s.child.signalCode === null).map(async (s) => {
        if (!s.child.connected) { s.child.kill('SIGTERM'); return }
        await s.peer.request('shutdown', reason, 5000).catch(() => { s.child.kill('SIGTERM') })
      }))
    },
    kill () {
      stopping = true
      for (const s of slots) if (s !== undefined && s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGKILL')
    },
    async stop (reason, killAfterMs = 60_000) {
      if (!stopping) await this.beginStop(reason)
      await Promise.all(slots.filter((s) => s !== undefined).map(async (s) => {
        if (s.child.exitCode !== null || s.child.signalCode !== null) return
        const exited = new Promise<void>((resolve) => { s.child.once('exit', () => { resolve() }) })
        const timer = setTimeout(() => {
          log.error('worker still running after the drain: killing it', { worker: s.slot, pid: s.pid })
          s.child.kill('SIGKILL')
        }, killAfterMs)
        await exited
        clearTimeout(timer)
      }))
    }
  }
}
