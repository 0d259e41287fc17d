#!/usr/bin/env node
/**
 * @module proxy/cli
 * The `vmfront` command: `proxy`, `check`, `routes check`, and the daemon's `daemon` and
 * `vm` subcommands. Exit status: 0 success, 2 bad usage or invalid configuration,
 * 1 runtime failure.
 */
import { parseArgs } from 'node:util'
import { loadConfig, workerCount, type ProxyConfig } from './config.ts'
import { loadMulchConfig } from './mulch-config.ts'
import { FileInvalidError, ProxyError } from './errors.ts'
import { MAX_KEPT_PROBLEMS, parseRouteFileText } from './route-table.ts'
import { readRouteFile, RouteFileReadError } from './route-file-read.ts'
import { versionLine } from './build-info.ts'
import { nearestWord } from './suggest.ts'

const USAGE = `Usage: vmfront <command> [options]

Commands:
  proxy [--config FILE]        run the proxy in the foreground (embedded default without --config;
        [--mulch-config DIR]   --mulch-config reads Mulch's mulchd.toml, to replace mulch-proxy)
  check [--config FILE] [--json]
        [--mulch-config DIR]   validate the config and every file it names, binding and writing
                               nothing; print every problem (exit 0 valid, 2 invalid)
  routes check [--all] FILE    validate a route file; print each problem with its JSON path
                               (the first 20 unless --all)
  daemon [--config FILE]       run the slim VM-manager core
  vm <subcommand> ...          talk to the daemon: create FILE, list, info NAME, rebuild NAME,
                               lock NAME, unlock NAME, delete NAME [--force], import-routes FILE
  chain forget NAME_OR_URL     remove a child from a running chain parent (via its admin listener)
  version                      print the version, the commit when known, and the Node version
  help                         this text

Options: --version prints the version; COMMAND --help prints that command's usage.

Exit status: 0 success, 2 bad usage or invalid configuration, 1 runtime failure.
`

const PROXY_USAGE = `Usage: vmfront proxy [--config FILE] [--mulch-config DIR_OR_FILE] [--takeover [--detach]]

Runs the proxy in the foreground. Without --config it runs on the embedded default
(HTTP on 127.0.0.1:8080, admin on 127.0.0.1:9180, a built-in example backend).
Signals: SIGHUP reloads, SIGTERM/SIGINT drain and exit, SIGUSR2 writes a dump.

Options:
  -c, --config FILE                the proxy's TOML configuration; with --mulch-config,
                                   vmfront-only settings (admin listener, timeouts, log...)
      --mulch-config DIR_OR_FILE   stand in for mulch-proxy: read Mulch's mulchd.toml
                                   (DIR means DIR/mulchd.toml) and mulch-proxy's files
                                   (see "Replacing mulch-proxy" in the README)
      --takeover                   take over from the proxy named by the same pid_file:
                                   its listening sockets (nothing queued is lost), the PID
                                   file and the admin listener; it then drains and exits
      --detach                     with --takeover: run the new proxy in the background and
                                   return once it serves (exit 0) or has failed to (exit 1);
                                   for systemd's ExecReload (examples/vmfront-proxy.service)
  -h, --help                       this text
`

const ROUTES_USAGE = `Usage: vmfront routes check [--all] FILE

Validates a route file (v1 or Mulch's mulch-proxy-domains.db format) without
starting anything. Problems go to stdout, one per line with its JSON path (the
first 20 and a count of the rest, unless --all); the verdict goes to stderr.
Exit status: 0 valid, 2 invalid or unreadable.
`

const CHECK_USAGE = `Usage: vmfront check [--config FILE] [--mulch-config DIR_OR_FILE] [--json]

Validates everything \`vmfront proxy\` would read at start, without binding a port or
writing a file: the TOML, the route file, the port file, extra_certs_file (readable,
parsed, key matching its certificate, covering its domains, not expired), the error
template, the ACME directory and CA file, listener conflicts and the chain URLs.
Without --config it checks the embedded default. With --mulch-config it checks a
Mulch installation as \`vmfront proxy --mulch-config\` reads it (mulchd.toml and the
files under data_path; --config then names the vmfront-only settings), and problems
name mulchd.toml's own keys.

Every problem is printed at once, one per line on stdout:
  FILE:LINE: KEY: what is wrong and what is expected
(warnings say "warning:"; they do not make the configuration invalid). A valid
configuration prints a one-line summary. Listeners are not bound: a port already
in use is not reported.

Options:
  -c, --config FILE                the proxy's TOML configuration
      --mulch-config DIR_OR_FILE   Mulch's mulchd.toml (a folder: DIR/mulchd.toml)
      --json                       print { ok, problems: [{ file, line?, key, message, severity }], summary }
  -h, --help                       this text

Exit status: 0 valid (warnings allowed), 2 invalid or unreadable.
`

const COMMANDS = ['proxy', 'check', 'routes', 'daemon', 'vm', 'chain', 'version', 'help'] as const

function unknownWord (what: string, word: string, known: readonly string[]): string {
  const near = nearestWord(word, known)
  return `${what} "${word}"${near === undefined ? '' : `: did you mean "${near}"?`}`
}

function fail (code: number, message: string): number {
  process.stderr.write(message.endsWith('\n') ? message : message + '\n')
  return code
}

async function runProxyCommand (args: string[]): Promise<number> {
  let values: { config?: string, 'mulch-config'?: string, takeover?: boolean, detach?: boolean, help?: boolean }
  try {
    ({ values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' }, 'mulch-config': { type: 'string' }, takeover: { type: 'boolean' }, detach: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals: false }))
  } catch (err) {
    return fail(2, `vmfront proxy: ${(err as Error).message}\n\n${PROXY_USAGE}`)
  }
  if (values.help === true) {
    process.stdout.write(PROXY_USAGE)
    return 0
  }
  if (values.detach === true && values.takeover !== true) return fail(2, `vmfront proxy: --detach is for --takeover (a proxy of its own runs in the foreground)\n\n${PROXY_USAGE}`)
  let config
  // SIGHUP reloads the TOML from the same source(s), the same way.
  const mulchConfig = values['mulch-config']
  const load = (): ProxyConfig => mulchConfig === undefined ? loadConfig(values.config) : loadMulchConfig(mulchConfig, values.config)
  try {
    config = load()
  } catch (err) {
    if (err instanceof FileInvalidError) {
      return fail(2, `vmfront proxy: invalid configuration in ${err.file}:\n${err.problems.map((p) => `  ${p.path}: ${p.message}`).join('\n')}`)
    }
    if (err instanceof ProxyError) return fail(2, `vmfront proxy: ${err.message}`)
    throw err
  }
  if (values.detach === true) {
    // The configuration is valid (a bad one stops here, the running proxy untouched):
    // the new proxy runs in the background, this command waits until it serves.
    const { launchDetached } = await import('./detach.ts')
    return await launchDetached(['proxy', ...args.filter((a) => a !== '--detach')], (line) => { process.stdout.write(line + '\n') })
  }
  const { startProxy } = await import('./main.ts')
  let takeover: import('./takeover.ts').TakenOver | undefined
  if (values.takeover === true) {
    const { requestTakeover } = await import('./takeover.ts')
    try {
      takeover = await requestTakeover(config.pidFile)
    } catch (err) {
      // Nothing runs (a first start from the same unit): start the usual way, and say so.
      process.stderr.write(`vmfront proxy: --takeover: ${(err as Error).message}; starting without one\n`)
    }
  }
  const workers = workerCount(config)
  // A worker loads the same files the same way (worker-main.ts).
  const configArgs = [...(values.config === undefined ? [] : ['--config', values.config]), ...(values['mulch-config'] === undefined ? [] : ['--mulch-config', values['mulch-config']])]
  try {
    const proxy = await startProxy(config, { loadConfig: load, ...(workers === 1 ? {} : { role: { kind: 'primary', workers, configArgs } }), ...(takeover === undefined ? {} : { takeover }) })
    // Started by `--takeover --detach`: its launcher returns now.
    if (values.takeover === true) (await import('./detach.ts')).tellLauncherReady()
    return await proxy.stopped
  } catch (err) {
    if (err instanceof ProxyError && err.code === 'CONFIG_INVALID') return fail(2, `vmfront proxy: ${err.message}`)
    return fail(1, `vmfront proxy: ${(err as Error).message}`)
  }
}

async function runCheckCommand (args: string[]): Promise<number> {
  let values: { config?: string, 'mulch-config'?: string, json?: boolean, help?: boolean }
  try {
    ({ values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' }, 'mulch-config': { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals: false }))
  } catch (err) {
    return fail(2, `vmfront check: ${(err as Error).message}\n\n${CHECK_USAGE}`)
  }
  if (values.help === true) {
    process.stdout.write(CHECK_USAGE)
    return 0
  }
  const { checkConfigFile, checkMulchConfig, formatCheckReport } = await import('./check.ts')
  const mulch = values['mulch-config']
  const report = mulch === undefined ? await checkConfigFile(values.config) : await checkMulchConfig(mulch, values.config)
  if (values.json === true) process.stdout.write(JSON.stringify({ ok: report.ok, problems: report.problems, summary: report.summary }, null, 2) + '\n')
  else {
    const text = formatCheckReport(mulch ?? values.config ?? '<embedded default>', report)
    process.stdout.write(text.problems)
    if (report.ok) process.stdout.write(text.verdict)
    else process.stderr.write(text.verdict)
  }
  return report.ok ? 0 : 2
}

/** Problems `routes check` prints before summarising the rest (all with --all). */
const CHECK_SHOWN_PROBLEMS = 20
/** Paths the one-line verdict names. */
const VERDICT_PATHS = 5

function plural (n: number, word: string): string {
  return `${n.toLocaleString('en-US')} ${word}${n === 1 ? '' : 's'}`
}

async function runRoutesCommand (args: string[]): Promise<number> {
  if (args.includes('--help') || args.includes('-h') || args[0] === 'help') {
    process.stdout.write(ROUTES_USAGE)
    return 0
  }
  let parsedArgs
  try {
    parsedArgs = parseArgs({ args, options: { all: { type: 'boolean' } }, strict: true, allowPositionals: true })
  } catch (err) {
    return fail(2, `vmfront routes: ${(err as Error).message}\n\n${ROUTES_USAGE}`)
  }
  const [sub, file, ...rest] = parsedArgs.positionals
  if (sub !== undefined && sub !== 'check') return fail(2, `vmfront routes: ${unknownWord('unknown subcommand', sub, ['check'])}\n\n${ROUTES_USAGE}`)
  if (file === undefined || rest.length > 0) return fail(2, ROUTES_USAGE)
  const all = parsedArgs.values.all === true
  let text: string
  try {
    text = await readRouteFile(file)
  } catch (err) {
    return fail(2, `${file}: ${err instanceof RouteFileReadError ? err.message : `cannot be read: ${(err as Error).message}`}`)
  }
  const result = parseRouteFileText(text)
  const shown = (count: number): number => all ? count : Math.min(count, CHECK_SHOWN_PROBLEMS)
  const more = (listed: number, count: number, what: string): string => {
    const why = listed < shown(count) ? `only the first ${MAX_KEPT_PROBLEMS.toLocaleString('en-US')} are kept` : '--all lists them'
    return `${file}: and ${plural(count - listed, `more ${what}`)} (${why})\n`
  }
  const warningsListed = Math.min(result.warnings.length, shown(result.warningCount))
  for (const w of result.warnings.slice(0, warningsListed)) process.stderr.write(`${file}: warning: ${w.path}: ${w.message}\n`)
  if (result.warningCount > warningsListed) process.stderr.write(more(warningsListed, result.warningCount, 'warning'))
  if (!result.ok) {
    // The problem list is the command's output (stdout); the verdict goes to stderr.
    const listed = Math.min(result.errors.length, shown(result.errorCount))
    for (const e of result.errors.slice(0, listed)) process.stdout.write(`${file}: ${e.path}: ${e.message}\n`)
    if (result.errorCount > listed) process.stdout.write(more(listed, result.errorCount, 'problem'))
    const n = result.errorCount
    const paths = result.errors.slice(0, VERDICT_PATHS).map((e) => e.path).join(', ')
    return fail(2, `${file}: invalid, ${plural(n, 'problem')} at ${paths}${n > VERDICT_PATHS ? `, ... (${(n - VERDICT_PATHS).toLocaleString('en-US')} more)` : ''}`)
  }
  process.stdout.write(`${file}: valid (${plural(result.table.routes.length, 'route')}, ${result.table.format} format)\n`)
  return 0
}

async function runDaemonCommand (command: 'daemon' | 'vm', args: string[]): Promise<number> {
  // The daemon is a separate program that shares this bin; proxy code never
  // depends on it, so it is loaded by path only when asked for.
  const modulePath = new URL('../daemon-adapter/cli.ts', import.meta.url).href
  const daemon = await import(modulePath) as { main: (command: 'daemon' | 'vm', args: string[]) => Promise<number> }
  return await daemon.main(command, args)
}

/** Runs the CLI; resolves to the exit code. */
export async function main (argv: string[]): Promise<number> {
  const [command, ...args] = argv
  switch (command) {
    case 'proxy':
      return await runProxyCommand(args)
    case 'check':
      return await runCheckCommand(args)
    case 'routes':
      return await runRoutesCommand(args)
    case 'daemon':
    case 'vm':
      return await runDaemonCommand(command, args)
    case 'chain':
      return await (await import('./chain/forget-cli.ts')).runChainCommand(args)
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE)
      return 0
    case 'version':
    case '--version':
    case '-V':
      process.stdout.write(versionLine() + '\n')
      return 0
    case undefined:
      return fail(2, USAGE)
    default:
      return fail(2, `vmfront: ${unknownWord('unknown command', command, COMMANDS)}\n\n${USAGE}`)
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code
  if (process.argv[2] === 'proxy') process.exit(code)
}, (err: unknown) => {
  process.stderr.write(`vmfront: ${(err as Error).stack ?? String(err)}\n`)
  process.exitCode = 1
})
