/**
 * @module daemon-adapter/cli
 * The `vmfront daemon` and `vmfront vm` subcommands. proxy/cli.ts imports this module
 * and calls `main(command, args)`; exit statuses: 0 ok, 2 bad usage or invalid input,
 * 1 runtime failure.
 */
import { AdapterError } from './errors.ts'
import { loadDaemonConfig } from './config.ts'
import { createLogger } from './log.ts'
import { startDaemon } from './main.ts'
import { runVmCommand, VM_USAGE } from './vm-cli.ts'
import type { CliIo } from './vm-cli.ts'

const DAEMON_USAGE = `usage: vmfront daemon [--config FILE]

Runs the VM-manager core in the foreground: the registry, the API, and the route
file of the proxy. Without --config: $VMFRONT_DAEMON_CONFIG, else /etc/vmfront/daemon.toml
if it exists, else the built-in defaults. SIGHUP rewrites the route file and signals the
proxy; SIGTERM or SIGINT stop the daemon.`

function report (io: CliIo, prefix: string, err: unknown): number {
  if (err instanceof AdapterError) {
    io.stderr.write(`${prefix}: ${err.message}\n`)
    return err.exitCode
  }
  io.stderr.write(`${prefix}: ${(err as Error).stack ?? String(err)}\n`)
  return 1
}

/** Parses `--config FILE` / `--config=FILE`; anything else is a usage error. */
function parseDaemonArgs (args: readonly string[]): { config?: string, help: boolean } {
  let config: string | undefined
  let help = false
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]
    if (arg === '--help' || arg === '-h') help = true
    else if (arg === '--config' || arg === '-c') {
      config = args[++i]
      if (config === undefined) throw new AdapterError('USAGE', '--config needs a file')
    } else if (arg.startsWith('--config=')) config = arg.slice('--config='.length)
    else throw new AdapterError('USAGE', `unknown argument "${arg}"\n${DAEMON_USAGE}`)
  }
  return { config, help }
}

/** Runs the daemon until SIGTERM or SIGINT; resolves with the exit status. */
async function runDaemonCommand (args: readonly string[], io: CliIo): Promise<number> {
  const options = parseDaemonArgs(args)
  if (options.help) {
    io.stdout.write(DAEMON_USAGE + '\n')
    return 0
  }
  const config = loadDaemonConfig(options.config, io.env)
  const log = createLogger({ level: config.logLevel })
  const daemon = await startDaemon(config, log)
  const onHup = (): void => {
    daemon.republish().catch((err: unknown) => { log.error('republishing routes failed', { err }) })
  }
  process.on('SIGHUP', onHup)
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    const stop = (s: NodeJS.Signals): void => {
      process.off('SIGTERM', stop)
      process.off('SIGINT', stop)
      resolve(s)
    }
    process.on('SIGTERM', stop)
    process.on('SIGINT', stop)
  })
  process.off('SIGHUP', onHup)
  log.info('stopping', { signal })
  await daemon.close()
  return 0
}

/**
 * Runs one subcommand with the given streams; never throws.
 * @returns the exit status
 */
export async function runCommand (command: 'daemon' | 'vm', args: readonly string[], io: CliIo): Promise<number> {
  if (command === 'daemon') {
    try {
      return await runDaemonCommand(args, io)
    } catch (err) {
      return report(io, 'vmfront daemon', err)
    }
  }
  if (command === 'vm') {
    try {
      return await runVmCommand(args, io)
    } catch (err) {
      return report(io, 'vmfront vm', err)
    }
  }
  io.stderr.write(`unknown command ${JSON.stringify(command)}\n${VM_USAGE}\n`)
  return 2
}

/**
 * Entry point for `vmfront daemon ...` and `vmfront vm ...` (called by proxy/cli.ts).
 * @returns the exit status (for `daemon`, once it has stopped on SIGTERM/SIGINT)
 */
export async function main (command: 'daemon' | 'vm', args: string[]): Promise<number> {
  return await runCommand(command, args, { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env })
}
