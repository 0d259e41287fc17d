/**
 * @module proxy/lifecycle
 * How a proxy process ends (SPEC §5 drain, §12 takeover), apart from what it serves:
 * the stop state machine (a drain; a second stop *signal* cuts it short), the drain's
 * order (stop accepting, let in-flight work finish within `timeouts.drain`, close what
 * is left, release the parts), the PID file's removal, and the process signals.
 * main.ts builds the parts and hands them over as `DrainSteps`; this module decides
 * when each runs.
 *
 * Only a second stop signal cuts a drain: a worker may get its primary's drain notice
 * and the service manager's SIGTERM in either order, and neither may end the other's drain.
 */
import type { Logger } from './log.ts'
import type { LineSink } from './line-sink.ts'
import { removePidFile } from './process-files.ts'

/** The drain reason of a takeover (a worker's drain sees the same words). */
export const TAKEOVER_REASON = 'takeover by pid'
/** How long a drain after a takeover leaves idle keep-alive connections open. */
const IDLE_GRACE_MS = 1000
/** How often the drain looks whether everything has finished. */
const DRAIN_POLL_MS = 50

/** What main.ts does at each step of a drain; this module calls them in order. */
export interface DrainSteps {
  /**
   * Stop accepting: new connections are refused from here on (after a takeover, the
   * new process accepts them). `handedOver`: the sockets now belong to a new process,
   * so idle keep-alive clients are left a moment to send their next request here.
   */
  stopAccepting (reason: string, handedOver: boolean): Promise<void>
  /** After "draining" is said: workers drain, a child deregisters from its parent. */
  beginDrain (reason: string, drainMs: number): Promise<void>
  /** Requests (and WebSockets) still being answered. */
  inFlight (): number
  /** Connections still open (idle keep-alive included). */
  openConnections (): number
  /** Closes idle keep-alive connections. */
  closeIdle (): void
  /** The drain is over (all done, or the deadline): cut what is left and release every part. */
  release (): Promise<void>
  /** The second stop signal: stop now (kill the workers). */
  kill (): void
  /** True while a route-file read has not returned (it would hold the exit: see leaveIfReadStuck). */
  readPending (): boolean
}

export interface LifecycleOptions {
  logger: Logger
  sink: LineSink
  /** A worker: says "worker draining"/"worker stopped" and owns no PID file. */
  worker: boolean
  pidFile: string
  /** Read when the drain starts: a SIGHUP may have changed it. */
  drainMs: () => number
  steps: DrainSteps
  /** Tests run several proxies in one process: no signal handlers, no exit by signal. */
  handleSignals: boolean
  /** The route file, named in the "read has not returned" line. */
  routesFile: string
}

export interface Lifecycle {
  /** Resolves with the exit code once the proxy has stopped. */
  readonly stopped: Promise<number>
  /** Starts the drain unless one runs (never escalates). */
  drain (reason: string): void
  /** A stop signal: the first drains, a second exits at once. */
  shutdown (reason: string): void
  /** True from the start of a drain. */
  stopping (): boolean
}

export function createLifecycle (options: LifecycleOptions): Lifecycle {
  const { logger, sink, steps } = options
  let resolveStopped!: (code: number) => void
  const stopped = new Promise<number>((resolve) => { resolveStopped = resolve })
  let stopping = false
  let signalled = false

  async function drainAndExit (reason: string): Promise<void> {
    const drainMs = options.drainMs()
    const handedOver = reason.startsWith(TAKEOVER_REASON)
    // A takeover's new process serves the same sockets: an idle keep-alive client gets a
    // moment to send its next request here (answered with Connection: close) rather than
    // a close racing that request.
    const keepIdleUntil = handedOver ? Date.now() + Math.min(IDLE_GRACE_MS, drainMs) : 0
    await steps.stopAccepting(reason, handedOver)
    // "shutting down: draining" is the proxy's (the primary's, once every worker has
    // stopped accepting), which operators and tests wait for; a worker says it in its own words.
    logger.info(options.worker ? 'worker draining' : 'shutting down: draining', { reason, in_flight: steps.inFlight(), drain_ms: drainMs })
    await steps.beginDrain(reason, drainMs)
    const deadline = Date.now() + drainMs
    await new Promise<void>((resolve) => {
      const check = (): void => {
        if (Date.now() >= keepIdleUntil) steps.closeIdle()
        if ((steps.inFlight() === 0 && steps.openConnections() === 0) || Date.now() >= deadline) {
          resolve()
          return
        }
        setTimeout(check, DRAIN_POLL_MS)
      }
      check()
    })
    const left = steps.inFlight()
    await steps.release()
    if (!options.worker) removePidFile(options.pidFile)
    logger.info(options.worker ? 'worker stopped' : 'stopped', { reason, cut_requests: left })
    sink.flush()
    leaveIfReadStuck(reason)
    resolveStopped(0)
  }

  // Node joins its thread pool before exiting: a route-file read stuck in the kernel (a
  // hung network file system) would hold the exit forever, so the process then ends by
  // the stop signal itself, with its default action.
  function leaveIfReadStuck (reason: string): void {
    if (!options.handleSignals || !steps.readPending()) return
    const signal = reason === 'SIGINT' ? 'SIGINT' : 'SIGTERM'
    logger.error('a route file read has not returned: exiting by signal, without waiting for it', { file: options.routesFile, signal })
    sink.flush()
    process.removeAllListeners(signal)
    process.kill(process.pid, signal)
  }

  function drain (reason: string): void {
    if (stopping) return
    stopping = true
    void drainAndExit(reason)
  }

  function shutdown (reason: string): void {
    if (signalled) {
      logger.warn('second stop signal: exiting now', { reason, in_flight: steps.inFlight() })
      // The whole proxy: a worker would otherwise go on draining without its primary.
      steps.kill()
      if (!options.worker) removePidFile(options.pidFile)
      sink.flush()
      leaveIfReadStuck(reason)
      resolveStopped(0)
      return
    }
    signalled = true
    drain(reason)
  }

  return { stopped, drain, shutdown, stopping: () => stopping }
}

/** What the process signals do (SPEC §5, §9, §13). */
export interface SignalHandlers {
  reload (): void
  shutdown (signal: 'SIGTERM' | 'SIGINT'): void
  /** SIGUSR2; undefined in a worker (its primary writes the one dump). */
  dump?: () => void
  /** SIGUSR1: logrotate's postrotate. */
  reopenLog (): void
}

/** Wires the process signals to a proxy (once per process). */
export function handleProcessSignals (handlers: SignalHandlers): void {
  process.on('SIGHUP', () => { handlers.reload() })
  process.on('SIGTERM', () => { handlers.shutdown('SIGTERM') })
  process.on('SIGINT', () => { handlers.shutdown('SIGINT') })
  const dump = handlers.dump
  if (dump !== undefined) process.on('SIGUSR2', () => { dump() })
  // The renamed file is left to logrotate; new lines go to a new one.
  process.on('SIGUSR1', () => { handlers.reopenLog() })
}
