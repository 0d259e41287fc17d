/**
 * @module daemon-adapter/notify
 * Tells the proxy to reload: SIGHUP to the PID in its PID file. Requests within
 * `debounceMs` of the first one of a burst share one signal. A missing file, a stale
 * PID (no such process) or a refused signal is an outcome to report, never an error:
 * the route file is already written and a proxy started later reads it anyway.
 */
import { readFileSync } from 'node:fs'
import type { Logger } from './log.ts'

/** What happened to one (coalesced) reload request. */
export interface SignalOutcome {
  /** `sent`: the proxy was signalled; the others say why not. */
  readonly status: 'sent' | 'no-pid-file' | 'invalid-pid-file' | 'stale-pid' | 'denied'
  readonly pid?: number
  /** For anything but `sent`: a sentence for the API answer and the log. */
  readonly message?: string
}

export interface ProxyNotifier {
  /** Asks for a reload; resolves with the outcome of the signal that covers it. */
  request (): Promise<SignalOutcome>
  /** Sends a pending signal at once (used at shutdown); resolves when done. */
  flush (): Promise<void>
}

/** Reads `pidFile` and sends `signal` to that process; never throws. */
export function signalProxy (pidFile: string, signal: NodeJS.Signals = 'SIGHUP'): SignalOutcome {
  let text: string
  try {
    text = readFileSync(pidFile, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    return { status: 'no-pid-file', message: `proxy PID file ${pidFile} ${code === 'ENOENT' ? 'does not exist' : `cannot be read (${code ?? 'error'})`}: is the proxy running? It will read the route file when it starts` }
  }
  const pid = Number(text.trim())
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(pid) || pid <= 1) {
    return { status: 'invalid-pid-file', message: `proxy PID file ${pidFile} does not hold a process id (${JSON.stringify(text.trim().slice(0, 40))})` }
  }
  try {
    process.kill(pid, signal)
    return { status: 'sent', pid }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ESRCH') return { status: 'stale-pid', pid, message: `proxy PID file ${pidFile} names process ${pid}, which is not running (stale PID file)` }
    return { status: 'denied', pid, message: `cannot signal proxy process ${pid}: ${code ?? (err as Error).message}` }
  }
}

/** Creates a notifier that coalesces requests into one SIGHUP per `debounceMs` window. */
export function createProxyNotifier (options: { pidFile: string, debounceMs: number, log: Logger }): ProxyNotifier {
  const { pidFile, debounceMs, log } = options
  let timer: NodeJS.Timeout | undefined
  let waiters: ((outcome: SignalOutcome) => void)[] = []

  function fire (): void {
    timer = undefined
    const batch = waiters
    waiters = []
    const outcome = signalProxy(pidFile)
    if (outcome.status === 'sent') log.info('proxy signalled to reload routes', { pid: outcome.pid, changes: batch.length })
    else log.warn('proxy not signalled', { status: outcome.status, reason: outcome.message })
    for (const resolve of batch) resolve(outcome)
  }

  return {
    request () {
      return new Promise((resolve) => {
        waiters.push(resolve)
        timer ??= setTimeout(fire, debounceMs)
      })
    },
    async flush () {
      if (timer === undefined) return
      clearTimeout(timer)
      fire()
    }
  }
}
