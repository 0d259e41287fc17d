/**
 * @module daemon-adapter/notify
 * Tells the proxy to reload: SIGHUP to the PID in its PID file. Requests within
 * `debounceMs` of the first one of a burst share one signal. A missing file, a stale
 * PID (no such process) or a refused signal is an outcome to report, never an error:
 * the route file is already written and a proxy started later reads it anyway.
 *
 * A PID file outlives its process, and the kernel hands its number to the next
 * process that wants one; SIGHUP's default action is to terminate. So the signal goes
 * only to a process whose command line (/proc/PID/cmdline) is `vmfront proxy`: the
 * bin or proxy/cli.ts followed by the `proxy` subcommand. Anything else is reported.
 */
import { readFileSync } from 'node:fs'
import { basename } from 'node:path'
import type { Logger } from './log.ts'

/** What happened to one (coalesced) reload request. */
export interface SignalOutcome {
  /**
   * `sent`: the proxy was signalled; the others say why not. `not-proxy`: the PID is
   * a live process that is not a vmfront proxy (the number was reused).
   */
  readonly status: 'sent' | 'no-pid-file' | 'invalid-pid-file' | 'stale-pid' | 'not-proxy' | 'denied'
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

/** Script names that run the vmfront CLI: the package bin and its source file. */
function isVmfrontScript (arg: string): boolean {
  const name = basename(arg)
  return name === 'vmfront' || ((name === 'cli.ts' || name === 'cli.js') && basename(arg.slice(0, -name.length - 1)) === 'proxy')
}

/**
 * True when `argv` (a process's command line) runs `vmfront proxy`: an argument that
 * is the vmfront bin or `.../proxy/cli.ts`, directly followed by `proxy`. `vmfront
 * daemon`, `vmfront vm ...` and every other program are not.
 */
export function isVmfrontProxyCommand (argv: readonly string[]): boolean {
  for (let i = 0; i < argv.length - 1; i++) {
    if (isVmfrontScript(argv[i])) return argv[i + 1] === 'proxy'
  }
  return false
}

/** The command line of `pid` as its arguments, or undefined when it cannot be read. */
function commandLine (pid: number): string[] | undefined {
  try {
    const raw = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
    return raw.split('\0').filter((a, i, all) => a !== '' || i < all.length - 1)
  } catch {
    return undefined
  }
}

function shown (argv: readonly string[]): string {
  const text = argv.join(' ')
  return JSON.stringify(text.length > 80 ? `${text.slice(0, 77)}...` : text)
}

/** Reads `pidFile` (with or without a trailing newline) and sends `signal` to that process if it is a vmfront proxy; never throws. */
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
    // Signal 0 only asks whether the process exists (and may be signalled).
    process.kill(pid, 0)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ESRCH') return { status: 'stale-pid', pid, message: `proxy PID file ${pidFile} names process ${pid}, which is not running (stale PID file)` }
    return { status: 'denied', pid, message: `cannot signal proxy process ${pid}: ${code ?? (err as Error).message}` }
  }
  const argv = commandLine(pid)
  if (argv === undefined || !isVmfrontProxyCommand(argv)) {
    const what = argv === undefined ? 'whose command line cannot be read' : argv.length === 0 ? 'which has no command line (a kernel thread or a zombie)' : `which runs ${shown(argv)}`
    return { status: 'not-proxy', pid, message: `proxy PID file ${pidFile} names process ${pid}, ${what}: not a vmfront proxy, so it was not signalled (stale PID file, its number reused)` }
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
