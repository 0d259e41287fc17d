/**
 * @module daemon-adapter/drivers/virsh
 * Runs virsh. A driver operation is a sequence of virsh commands (each an argument
 * array) run in ONE virsh process over one connection: `virsh -c URI "<cmd> ; <cmd>"`.
 * No shell is involved: the process is started with execFile and an argument array,
 * and each argument is quoted for virsh's own command tokenizer. One connection per
 * operation also means the sequence sees its own effects on stateless hypervisors such
 * as libvirt's `test:///default`.
 */
import { execFile } from 'node:child_process'
import { AdapterError } from '../errors.ts'

/** One virsh command: its name then its arguments, e.g. `['start', 'vm-r0']`. */
export type VirshCommand = readonly string[]

export interface VirshResult {
  readonly stdout: string
  /** Error lines virsh printed that the caller chose to tolerate. */
  readonly tolerated: readonly string[]
}

export interface VirshRunner {
  /**
   * Runs `commands` in order in one virsh process. virsh carries on after a failed
   * command, so failure is read from its `error:` lines: any line not matched by
   * `tolerate` fails the whole run.
   * @throws AdapterError DRIVER_FAILED (with virsh's error lines), DRIVER_TIMEOUT
   */
  run (commands: readonly VirshCommand[], options?: { tolerate?: readonly RegExp[] }): Promise<VirshResult>
}

/**
 * Quotes one argument for virsh's tokenizer: inside single quotes nothing is special;
 * a single quote is written as `'\''` (close, escaped quote, reopen), as in sh.
 */
export function quoteVirshArg (arg: string): string {
  if (/[\0\n\r]/.test(arg)) throw new AdapterError('DRIVER_FAILED', `refusing a virsh argument with a control character: ${JSON.stringify(arg)}`)
  return `'${arg.replaceAll("'", "'\\''")}'`
}

/** The single batch argument for a command sequence. */
export function virshBatch (commands: readonly VirshCommand[]): string {
  return commands.map((command) => command.map(quoteVirshArg).join(' ')).join(' ; ')
}

export interface VirshRunnerOptions {
  /** The virsh executable. */
  readonly virsh: string
  readonly uri: string
  /** Bound on one run, in ms; the process is killed when it is exceeded. */
  readonly timeoutMs: number
}

/** Creates a runner that spawns `virsh -c URI <batch>` per run. */
export function createVirshRunner (options: VirshRunnerOptions): VirshRunner {
  return {
    run (commands, runOptions = {}) {
      const tolerate = runOptions.tolerate ?? []
      const args = ['-c', options.uri, virshBatch(commands)]
      const names = commands.map((c) => c[0]).join(', ')
      return new Promise((resolve, reject) => {
        execFile(options.virsh, args, {
          timeout: options.timeoutMs,
          killSignal: 'SIGKILL',
          maxBuffer: 16 * 1024 * 1024,
          env: { ...process.env, LC_ALL: 'C' }
        }, (err, stdout, stderr) => {
          if (err !== null && (err as { killed?: boolean }).killed === true) {
            reject(new AdapterError('DRIVER_TIMEOUT', `virsh (${names}) did not finish within ${options.timeoutMs} ms`, { cause: err }))
            return
          }
          if (err !== null && typeof (err as { code?: unknown }).code === 'string') {
            reject(new AdapterError('DRIVER_FAILED', `cannot run ${options.virsh}: ${err.message}`, { cause: err }))
            return
          }
          const errors = stderr.split('\n').map((l) => l.trim()).filter((l) => l.startsWith('error:'))
          const fatal = errors.filter((l) => !tolerate.some((re) => re.test(l)))
          if (err !== null && errors.length === 0) {
            reject(new AdapterError('DRIVER_FAILED', `virsh (${names}) exited with ${String(err.code)}: ${stderr.trim() || 'no message'}`, { cause: err }))
            return
          }
          if (fatal.length > 0) {
            reject(new AdapterError('DRIVER_FAILED', `virsh (${names}) failed: ${fatal.map((l) => l.slice(6).trim()).join('; ')}`,
              { details: { virsh: fatal } }))
            return
          }
          resolve({ stdout, tolerated: errors.filter((l) => !fatal.includes(l)) })
        })
      })
    }
  }
}
