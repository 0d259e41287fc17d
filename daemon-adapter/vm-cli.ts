/**
 * @module daemon-adapter/vm-cli
 * `vmfront vm ...`: parses the arguments, finds the daemon (flags, then environment,
 * then the local daemon's config), calls the API and prints the answer.
 */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { createInterface } from 'node:readline/promises'
import { parse as parseToml } from 'smol-toml'
import { readClientKey } from './api-keys.ts'
import { createApiClient } from './client.ts'
import type { ApiClient, ChangeInfo, VmInfo } from './client.ts'
import { loadDaemonConfig } from './config.ts'
import { AdapterError } from './errors.ts'
import { definitionToJson } from './vm-definition.ts'
import { KEY_ENV, URL_ENV } from './protocol.ts'
import { importRoutes } from './route-import.ts'
import type { ImportReport } from './route-import.ts'

/** The process streams and environment a command uses (injectable for tests). */
export interface CliIo {
  readonly stdout: NodeJS.WritableStream
  readonly stderr: NodeJS.WritableStream
  readonly stdin: NodeJS.ReadableStream & { isTTY?: boolean }
  readonly env: NodeJS.ProcessEnv
}

export const VM_USAGE = `usage: vmfront vm [--url URL] [--key KEY] [--config FILE] COMMAND ...

commands:
  create FILE             create a VM from its TOML definition; waits until it serves
  list [--json]           one VM per line: name, revision, state, lock, address, domains
  info NAME [--json]      one VM in detail
  rebuild NAME [FILE]     new revision (from FILE, else the current definition); switches once it is up
  lock NAME               protect from delete and rebuild
  unlock NAME
  delete NAME [--force]   asks for confirmation on a terminal unless --force
  import-routes FILE      adopt the routes of a route file the daemon did not write (v1 or
                          Mulch's format) as static VMs, in the local daemon's registry
                          (--config); the daemon may then overwrite FILE

The daemon is found from --url/--key (before or after the command), else $${URL_ENV}/$${KEY_ENV},
else the local daemon's config (--config, $VMFRONT_DAEMON_CONFIG or /etc/vmfront/daemon.toml).`

interface VmArgs {
  url?: string
  key?: string
  config?: string
  json: boolean
  force: boolean
  help: boolean
  positional: string[]
}

function parseArgs (args: readonly string[]): VmArgs {
  const parsed: VmArgs = { json: false, force: false, help: false, positional: [] }
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]
    const eq = arg.indexOf('=')
    const name = arg.startsWith('--') && eq > 0 ? arg.slice(0, eq) : arg
    const inline = arg.startsWith('--') && eq > 0 ? arg.slice(eq + 1) : undefined
    if (name === '--url' || name === '--key' || name === '--config') {
      const value = inline ?? args[++i]
      if (value === undefined || value === '') throw new AdapterError('USAGE', `${name} needs a value\n${VM_USAGE}`)
      parsed[name.slice(2) as 'url' | 'key' | 'config'] = value
    } else if (arg === '--json') parsed.json = true
    else if (arg === '--force' || arg === '-f') parsed.force = true
    else if (arg === '--help' || arg === '-h') parsed.help = true
    else if (arg.startsWith('-') && arg !== '-') throw new AdapterError('USAGE', `unknown option "${arg}"\n${VM_USAGE}`)
    else parsed.positional.push(arg)
  }
  return parsed
}

/** Finds the daemon's URL and key: flags, then environment, then the daemon config. */
function connect (args: VmArgs, env: NodeJS.ProcessEnv): ApiClient {
  return createApiClient(daemonAddress(args, env))
}

function daemonAddress (args: VmArgs, env: NodeJS.ProcessEnv): { url: string, key: string } {
  let url = args.url ?? env[URL_ENV]
  let key = args.key ?? env[KEY_ENV]
  if (url === undefined || key === undefined || url === '' || key === '') {
    const config = loadDaemonConfig(args.config, env)
    const host = config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host
    if (url === undefined || url === '') url = `http://${host === '0.0.0.0' ? '127.0.0.1' : host === '[::]' ? '[::1]' : host}:${config.listen.port}`
    if (key === undefined || key === '') {
      try {
        key = readClientKey(config.apiKeysFile, config.dataDir)
      } catch (err) {
        throw new AdapterError('USAGE', `no API key: give --key or set ${KEY_ENV} (${(err as Error).message})`)
      }
      if (key === undefined) throw new AdapterError('USAGE', `no API key: give --key or set ${KEY_ENV} (${config.apiKeysFile} holds only hashed keys)`)
    }
  }
  return { url, key }
}

/** When the first progress line is written, then how often: a quick change stays silent. */
const PROGRESS_FIRST_MS = 2000
const PROGRESS_EVERY_MS = 5000

/** The ports a VM's domains point at, from the API's "domain" or "domain->port" strings. */
function domainPorts (vm: VmInfo): number[] {
  const domains = (vm.definition?.domains ?? []) as unknown[]
  return [...new Set(domains.map((d) => /->(\d+)$/.exec(String(d))?.[1] ?? '80').map(Number))]
}

/**
 * While a create or rebuild waits for its VM (the daemon answers only once the new
 * revision is up, up to its up_timeout), says on stderr what it waits for and for how
 * long, asking the daemon about the VM's pending revision on a second connection.
 * @returns a function that stops the reports and aborts a question in flight (so nothing
 *   keeps the process alive once the change has answered)
 */
function reportProgress (io: CliIo, args: VmArgs, name: string | undefined): () => void {
  const started = Date.now()
  const stop = new AbortController()
  const { url, key } = daemonAddress(args, io.env)
  const watcher = createApiClient({
    url,
    key,
    fetch: (input, init) => fetch(input, { ...init, signal: AbortSignal.any([stop.signal, AbortSignal.timeout(PROGRESS_EVERY_MS)]) })
  })
  let timer: NodeJS.Timeout | undefined
  const tick = async (): Promise<void> => {
    let what = name === undefined ? 'the daemon' : `the daemon to start VM "${name}"`
    if (name !== undefined) {
      try {
        const vm = await watcher.info(name)
        const pending = vm.revisions.find((r) => r.state === 'pending')
        if (pending !== undefined) {
          const ports = domainPorts(vm)
          what = `VM "${name}" r${pending.number} at ${pending.address} to come up` +
            (ports.length > 0 ? ` (port ${ports.join(', ')} accepting connections)` : '')
        }
      } catch {
        // Not registered yet (the parent is being asked) or a slow answer: say less.
      }
    }
    if (stop.signal.aborted) return
    io.stderr.write(`waiting for ${what}: ${Math.round((Date.now() - started) / 1000)} s so far\n`)
    timer = setTimeout(() => { void tick() }, PROGRESS_EVERY_MS)
  }
  timer = setTimeout(() => { void tick() }, PROGRESS_FIRST_MS)
  return () => {
    stop.abort()
    clearTimeout(timer)
  }
}

/** The `name` in a VM file's TOML, if it reads as one (the daemon reports every problem). */
function vmName (text: string): string | undefined {
  try {
    const name = (parseToml(text) as { name?: unknown }).name
    return typeof name === 'string' ? name : undefined
  } catch {
    return undefined
  }
}

/** Runs a change that waits for a VM, with progress on stderr meanwhile. */
async function withProgress<T> (io: CliIo, args: VmArgs, name: string | undefined, change: () => Promise<T>): Promise<T> {
  const stop = reportProgress(io, args, name)
  try {
    return await change()
  } finally {
    stop()
  }
}

function need (args: VmArgs, count: number, what: string): string[] {
  const rest = args.positional.slice(1)
  if (rest.length < count) throw new AdapterError('USAGE', `${args.positional[0]} needs ${what}\n${VM_USAGE}`)
  return rest
}

function readVmFile (file: string): { text: string, file: string } {
  try {
    return { text: readFileSync(file, 'utf8'), file }
  } catch (err) {
    throw new AdapterError('VM_INVALID', `${file}: cannot read the VM file: ${(err as Error).message}`)
  }
}

function listLine (vm: VmInfo): string {
  const revision = vm.revision === null ? '-' : `r${vm.revision}`
  return [vm.name, revision, vm.state, vm.locked ? 'locked' : '-', vm.address ?? '-', vm.domains.join(',') || '-'].join('\t')
}

function infoText (vm: VmInfo): string {
  const lines = [
    `name:      ${vm.name}`,
    `state:     ${vm.state}${vm.revision === null ? '' : ` (r${vm.revision})`}`,
    `locked:    ${vm.locked ? 'yes' : 'no'}`,
    `address:   ${vm.address ?? '-'}`,
    `created:   ${vm.created_at}`
  ]
  const def = vm.definition ?? {}
  for (const key of ['domains', 'redirects', 'redirect_to_https', 'rate_profile', 'cpus', 'ram', 'disk_size', 'seed', 'network']) {
    if (def[key] === undefined) continue
    const value = def[key]
    const text = Array.isArray(value)
      ? value.map((v) => (Array.isArray(v) ? `${String(v[0])} -> ${String(v[1])} (${String(v[2])})` : String(v))).join(', ')
      : String(value)
    lines.push(`${(key + ':').padEnd(10)} ${text === '' ? '-' : text}`)
  }
  for (const r of vm.revisions) lines.push(`revision:  r${r.number} ${r.state} ${r.address} ${r.handle} ${r.created_at}`)
  return lines.join('\n') + '\n'
}

function printChange (io: CliIo, verb: string, name: string, change: ChangeInfo, json: boolean): void {
  if (json) io.stdout.write(JSON.stringify(change, null, 2) + '\n')
  else {
    const vm = change.vm
    const where = vm === null ? '' : ` r${String(vm.revision)} (${vm.state}) at ${vm.address ?? '-'}`
    io.stdout.write(`${verb} VM "${name}"${where}; route file: ${change.routes.count} routes${change.routes.written ? '' : ' (unchanged)'}\n`)
  }
  const reload = change.routes.reload
  if (reload.status !== 'sent' && reload.status !== 'unchanged') io.stderr.write(`warning: the proxy was not told to reload: ${reload.message ?? reload.status}\n`)
  for (const warning of change.warnings) io.stderr.write(`warning: ${warning}\n`)
}

function printImport (io: CliIo, report: ImportReport, routesFile: string, json: boolean): void {
  if (json) {
    io.stdout.write(JSON.stringify({ file: report.file, format: report.format, routes: report.routes, vms: report.vms.map((r) => ({ name: r.vm, address: r.address, definition: definitionToJson(r.definition) })) }, null, 2) + '\n')
  } else {
    const n = report.vms.length
    io.stdout.write(`imported ${report.routes} route${report.routes === 1 ? '' : 's'} (${report.format} format) of ${report.file} as ${n} static VM${n === 1 ? '' : 's'}:\n`)
    for (const r of report.vms) {
      const def = r.definition
      const served = def.domains.map((d) => `${d.domain}->${d.port}`)
      const redirected = def.redirects.map((x) => `${x.from} (redirect to ${x.to})`)
      io.stdout.write(`  ${r.vm}\t${r.address}\t${[...served, ...redirected].join(', ')}\n`)
    }
  }
  if (resolve(report.file) === resolve(routesFile)) {
    io.stderr.write(`the daemon may now overwrite ${routesFile}: start it, or send it SIGHUP if it is running\n`)
  } else {
    io.stderr.write(`note: the daemon's routes_file is ${routesFile}, not ${report.file}; it is still checked when the daemon starts\n`)
  }
}

async function confirm (io: CliIo, question: string): Promise<boolean> {
  const rl = createInterface({ input: io.stdin, output: io.stderr })
  try {
    const answer = await rl.question(question)
    return /^(y|yes)$/i.test(answer.trim())
  } finally {
    rl.close()
  }
}

/** Runs `vmfront vm ARGS`; resolves with the exit status, throws AdapterError on failure. */
export async function runVmCommand (argv: readonly string[], io: CliIo): Promise<number> {
  const args = parseArgs(argv)
  const command = args.positional[0]
  if (args.help || command === undefined || command === 'help') {
    ;(command === undefined && !args.help ? io.stderr : io.stdout).write(VM_USAGE + '\n')
    return command === undefined && !args.help ? 2 : 0
  }
  switch (command) {
    case 'create': {
      const [file] = need(args, 1, 'a VM file')
      const body = readVmFile(file)
      const client = connect(args, io.env)
      const change = await withProgress(io, args, vmName(body.text), () => client.create(body.text, body.file))
      printChange(io, 'created', change.vm?.name ?? file, change, args.json)
      return 0
    }
    case 'list': {
      const vms = await connect(args, io.env).list()
      io.stdout.write(args.json ? JSON.stringify(vms, null, 2) + '\n' : vms.map((vm) => listLine(vm) + '\n').join(''))
      return 0
    }
    case 'info': {
      const [name] = need(args, 1, 'a VM name')
      const vm = await connect(args, io.env).info(name)
      io.stdout.write(args.json ? JSON.stringify(vm, null, 2) + '\n' : infoText(vm))
      return 0
    }
    case 'rebuild': {
      const [name, file] = need(args, 1, 'a VM name')
      const client = connect(args, io.env)
      const body = file === undefined ? undefined : readVmFile(file)
      const change = await withProgress(io, args, name, () => client.rebuild(name, body))
      printChange(io, 'rebuilt', name, change, args.json)
      return 0
    }
    case 'lock':
    case 'unlock': {
      const [name] = need(args, 1, 'a VM name')
      const client = connect(args, io.env)
      const vm = command === 'lock' ? await client.lock(name) : await client.unlock(name)
      io.stdout.write(args.json ? JSON.stringify(vm, null, 2) + '\n' : `VM "${vm.name}" ${vm.locked ? 'locked' : 'unlocked'}\n`)
      return 0
    }
    case 'delete': {
      const [name] = need(args, 1, 'a VM name')
      if (!args.force) {
        if (io.stdin.isTTY !== true) {
          throw new AdapterError('USAGE', `not deleting VM "${name}" without confirmation: stdin is not a terminal, use --force`)
        }
        const client = connect(args, io.env)
        const vm = await client.info(name)
        const ok = await confirm(io, `Delete VM "${vm.name}" (${vm.domains.join(', ') || 'no domains'})? Its routes go at once. [y/N] `)
        if (!ok) {
          io.stderr.write('not deleted\n')
          return 1
        }
      }
      const change = await connect(args, io.env).remove(name)
      printChange(io, 'deleted', name, change, args.json)
      return 0
    }
    case 'import-routes': {
      const [file] = need(args, 1, 'a route file')
      // Local on purpose: a daemon that found this file refuses to start until it is imported.
      const config = loadDaemonConfig(args.config, io.env)
      printImport(io, importRoutes(config, file), config.routesFile, args.json)
      return 0
    }
    default:
      throw new AdapterError('USAGE', `unknown command "${command}"\n${VM_USAGE}`)
  }
}
