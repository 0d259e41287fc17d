/**
 * @module daemon-adapter/route-import
 * `vmfront vm import-routes FILE`: adopts the routes of a route file the daemon did
 * not write (v1, or Mulch's legacy format, read with the proxy's own parser) as
 * static VMs, and records the file's hash so the daemon may overwrite it from then
 * on. It works on the registry directly, not through the API: its purpose is to let
 * a daemon start that refused to (a running daemon sees the new VMs at once and
 * writes the file on its next SIGHUP or change).
 *
 * One VM per target address, with its domains and their ports; routes of one address
 * that differ in `vm`, `redirect_to_https` or `rate_profile` become one VM each, as
 * these are per-VM settings. A redirect joins the VM its `vm` names, else the VM
 * serving its `redirect_to` domain.
 */
import { mkdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { parseRouteFileText } from '../proxy/route-table.ts'
import type { Route } from '../proxy/route-table.ts'
import type { DaemonConfig } from './config.ts'
import { AdapterError, FileInvalidError } from './errors.ts'
import { createStaticDriver } from './drivers/static.ts'
import { openRegistry, REGISTRY_FILE } from './registry.ts'
import type { Revision } from './registry.ts'
import { sha256Hex } from './route-ownership.ts'
import { parseVmDefinition } from './vm-definition.ts'
import type { VmDefinition } from './vm-definition.ts'

/** What an import did. */
export interface ImportReport {
  readonly file: string
  readonly format: 'v1' | 'mulch-legacy'
  readonly routes: number
  readonly vms: readonly Revision[]
}

interface Group {
  readonly address: string
  /** The `vm` the routes name ("" for none). */
  readonly vmHint: string
  readonly redirectToHttps: boolean
  readonly rateProfile: string
  readonly domains: string[]
  readonly redirects: [string, string, string][]
}

function groupKey (address: string, vmHint: string, https: boolean, profile: string): string {
  return JSON.stringify([address, vmHint, https, profile])
}

/** A valid VM name made of `text` (a `vm` value or an address): "10.0.0.5" → "10-0-0-5", "App" → "app". */
function vmName (text: string): string {
  const name = text.toLowerCase().replace(/[^a-z0-9_-]+/g, '-').replace(/^[-_]+/, '').slice(0, 48).replace(/[-_]+$/, '')
  return name === '' ? 'vm' : name
}

function uniqueName (wanted: string, taken: Set<string>): string {
  let name = wanted
  for (let n = 2; taken.has(name); n++) name = `${wanted.slice(0, 48 - String(n).length - 1)}-${n}`
  taken.add(name)
  return name
}

/**
 * Groups validated routes into static VM definitions, naming each VM after the
 * `vm` its routes give when that is a valid, free name, else after its address.
 * @param takenNames VM names already in the registry
 * @throws FileInvalidError VM_INVALID naming the routes that cannot be placed
 */
export function planImport (routes: readonly Route[], file: string, takenNames: ReadonlySet<string>): VmDefinition[] {
  const groups = new Map<string, Group>()
  const group = (address: string, vmHint: string, https: boolean, profile: string): Group => {
    const key = groupKey(address, vmHint, https, profile)
    let g = groups.get(key)
    if (g === undefined) {
      g = { address, vmHint, redirectToHttps: https, rateProfile: profile, domains: [], redirects: [] }
      groups.set(key, g)
    }
    return g
  }
  const servedBy = new Map<string, Group>()
  const addressOfVm = new Map<string, string>()
  for (const r of routes) {
    if (r.target === undefined) continue
    const g = group(r.target.host, r.vm ?? '', r.redirectToHttps, r.rateProfile ?? '')
    g.domains.push(r.target.port === 80 ? r.domain : `${r.domain}->${r.target.port}`)
    servedBy.set(r.domain, g)
    if (r.vm !== undefined && !addressOfVm.has(r.vm)) addressOfVm.set(r.vm, r.target.host)
  }
  const problems: { key: string, message: string }[] = []
  for (const r of routes) {
    if (r.redirectTo === undefined) continue
    const byVm = r.vm === undefined ? undefined : addressOfVm.get(r.vm)
    const target = servedBy.get(r.redirectTo)
    const address = byVm ?? target?.address
    if (address === undefined) {
      problems.push({
        key: `route "${r.domain}"`,
        message: `redirects to ${r.redirectTo}, which no route of the file serves, and names no VM that has a target: there is no address to attach it to (give it the "vm" of a route with a target, or remove it)`
      })
      continue
    }
    const vmHint = r.vm ?? target?.vmHint ?? ''
    group(address, vmHint, r.redirectToHttps, r.rateProfile ?? '').redirects.push([r.domain, r.redirectTo, String(r.redirectCode)])
  }
  if (problems.length > 0) throw new FileInvalidError('VM_INVALID', file, problems)

  const taken = new Set(takenNames)
  const definitions: VmDefinition[] = []
  // Groups that name a VM take their name first, so a derived name never steals it.
  const ordered = [...groups.values()].sort((a, b) => Number(b.vmHint !== '') - Number(a.vmHint !== ''))
  for (const g of ordered) {
    const wanted = vmName(g.vmHint !== '' ? g.vmHint : g.address)
    const name = uniqueName(wanted, taken)
    const doc: Record<string, unknown> = {
      name,
      address: g.address,
      domains: g.domains,
      redirects: g.redirects,
      redirect_to_https: g.redirectToHttps
    }
    if (g.rateProfile !== '') doc.rate_profile = g.rateProfile
    definitions.push(parseVmDefinition(doc, `${file} (VM "${name}" at ${g.address})`, { driver: 'static', defaultNetwork: 'default' }))
  }
  return definitions.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
}

/** Reads a route file without ever blocking on a FIFO or a device. */
function readRouteFileText (file: string): string {
  try {
    if (!statSync(file).isFile()) throw new AdapterError('USAGE', `${file}: not a regular file`)
    return readFileSync(file, 'utf8')
  } catch (err) {
    if (err instanceof AdapterError) throw err
    throw new AdapterError('USAGE', `${file}: cannot read the route file: ${(err as Error).message}`, { cause: err })
  }
}

/**
 * Imports `file` into the registry of the daemon configured by `config`: all its
 * routes or none.
 * @throws AdapterError USAGE (unreadable file, libvirt driver), FileInvalidError VM_INVALID
 *   (the file's problems, with their JSON paths), VM_EXISTS, DOMAIN_CONFLICT
 */
export function importRoutes (config: DaemonConfig, file: string): ImportReport {
  if (config.driver !== 'static') {
    throw new AdapterError('USAGE', `import-routes adopts routes as static VMs, which the ${config.driver} driver of ${config.file} does not run; move ${file} away instead, or use driver = "static"`)
  }
  const text = readRouteFileText(file)
  const parsed = parseRouteFileText(text)
  if (!parsed.ok) {
    throw new FileInvalidError('VM_INVALID', file, parsed.errors.map((e) => ({ key: e.path, message: e.message })))
  }
  try {
    mkdirSync(config.dataDir, { recursive: true, mode: 0o700 })
  } catch (err) {
    throw new AdapterError('CONFIG_UNREADABLE', `${config.file}: data_dir ${config.dataDir} cannot be created: ${(err as Error).message}`, { cause: err })
  }
  const registry = openRegistry(join(config.dataDir, REGISTRY_FILE))
  try {
    const definitions = planImport(parsed.table.routes, file, new Set(registry.list().map((vm) => vm.name)))
    const driver = createStaticDriver()
    const vms = registry.adoptVms(definitions, (definition) => driver.place(definition, 0, { ips: new Set(), macs: new Set() }), sha256Hex(text))
    return { file, format: parsed.table.format, routes: parsed.table.routes.length, vms }
  } finally {
    registry.close()
  }
}
