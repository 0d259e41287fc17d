/**
 * @module proxy/detach
 * `vmfront proxy --takeover --detach` (SPEC §12, README "Workers and takeover"): the
 * command starts the new proxy in the background and returns once it serves — exit 0
 * — or once it has failed to — exit 1. This is what systemd's `ExecReload=` needs: a
 * reload command must finish, and the process it leaves behind stays in the unit's
 * cgroup; when the old main process exits after its drain, systemd re-reads `PIDFile=`
 * (which the new process wrote before the old one was told to drain) and supervises
 * the new one as the unit's main process.
 *
 * The launcher and the new proxy talk over the IPC channel `spawn` opens: the new
 * proxy says `ready` once it serves the sockets it took over, then closes the channel,
 * so nothing ties it to the launcher afterwards. It is started in its own session
 * (`detached`), so a terminal's Ctrl-C to the launcher does not reach it, and shares
 * the launcher's stdout and stderr: its log goes where the launcher's did (under
 * systemd, the journal).
 */
import { spawn } from 'node:child_process'

/** The environment variable by which the launched proxy knows a launcher waits. */
const LAUNCHER_ENV = 'VMFRONT_DETACH_LAUNCHER'

interface ReadyMessage { vmfrontDetach: 'ready', pid: number }

function isReady (m: unknown): m is ReadyMessage {
  return typeof m === 'object' && m !== null && (m as ReadyMessage).vmfrontDetach === 'ready'
}

/**
 * Starts `node <cli> <args>` (args without `--detach`) in the background and resolves
 * with the launcher's exit status: 0 once it serves, 1 if it exited first.
 */
export function launchDetached (args: readonly string[], out: (line: string) => void): Promise<number> {
  const cli = process.argv[1]
  const child = spawn(process.execPath, [...process.execArgv, cli, ...args], {
    detached: true,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, [LAUNCHER_ENV]: '1' }
  })
  return new Promise((resolve) => {
    let done = false
    const finish = (code: number, line: string): void => {
      if (done) return
      done = true
      out(line)
      child.removeAllListeners()
      if (child.connected) child.disconnect()
      child.unref()
      resolve(code)
    }
    child.on('message', (m) => {
      if (isReady(m)) finish(0, `vmfront proxy: took over; the new proxy serves as PID ${m.pid}, the previous one drains`)
    })
    child.on('error', (err) => { finish(1, `vmfront proxy: --detach: cannot start the new proxy: ${err.message}`) })
    child.on('exit', (code, signal) => {
      finish(1, `vmfront proxy: --detach: the new proxy exited before serving (${signal === null ? `status ${code ?? 1}` : `signal ${signal}`}); the running proxy keeps serving`)
    })
  })
}

/** In a proxy started by `launchDetached`: tell the launcher it serves, and let go of it. */
export function tellLauncherReady (): void {
  if (process.env[LAUNCHER_ENV] !== '1' || typeof process.send !== 'function') return
  delete process.env[LAUNCHER_ENV]
  const message: ReadyMessage = { vmfrontDetach: 'ready', pid: process.pid }
  process.send(message, undefined, {}, () => { process.disconnect?.() })
}
