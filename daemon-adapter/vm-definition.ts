/**
 * @module daemon-adapter/vm-definition
 * VM definition files (TOML, Mulch's syntax): parse, check every key, return a frozen
 * definition. Every error names the file, the key and the value.
 */
import { parse as parseToml } from 'smol-toml'
import { hostnameProblem, parseTarget, REDIRECT_CODES } from '../proxy/route-table.ts'
import type { RedirectCode } from '../proxy/route-table.ts'
import { FileInvalidError } from './errors.ts'
import type { Problem } from './errors.ts'
import { FieldReader, isTable, show, typeName } from './toml-fields.ts'
import type { Table } from './toml-fields.ts'
import { parseSizeMiB } from './units.ts'
import { parseVmPorts, portClaim, vmGroupPortToString, vmPortToString, type VmGroupPort, type VmPort } from './vm-ports.ts'
import type { DriverName } from './config.ts'

/** A domain served by the VM on `port` (Mulch: `'app.example.com->8080'`, port 80 by default). */
export interface DomainPort {
  readonly domain: string
  readonly port: number
}

/** A domain that redirects elsewhere (Mulch: `['www.app.example.com', 'app.example.com', '301']`). */
export interface Redirect {
  readonly from: string
  readonly to: string
  readonly code: RedirectCode
}

/** Libvirt-specific settings of a VM. */
export interface LibvirtVmSettings {
  readonly cpus: number
  readonly ramMiB: number
  readonly diskMiB: number
  /** A volume in the pool the revision's disk is a copy-on-write overlay of; "" = an empty disk. */
  readonly seed: string
  readonly network: string
}

/** A validated VM definition. Exactly one of `address` (static) and `libvirt` is set. */
export interface VmDefinition {
  readonly name: string
  readonly domains: readonly DomainPort[]
  readonly redirects: readonly Redirect[]
  readonly redirectToHttps: boolean
  /** "" = the proxy's default profile. */
  readonly rateProfile: string
  /** Public TCP ports in Mulch's syntax (vm-ports.ts); absent in revisions stored before they existed. */
  readonly ports?: readonly VmPort[]
  /** Mulch's VM-to-VM ports (`->@group` exports, `<-@group` imports). */
  readonly groupPorts?: readonly VmGroupPort[]
  /** Static driver: the VM's IP or host name. */
  readonly address?: string
  readonly libvirt?: LibvirtVmSettings
}

/** VM names: they become libvirt domain and volume names, so keep them plain. */
export const VM_NAME = /^[a-z0-9][a-z0-9_-]{0,47}$/
const VOLUME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/
const PROFILE = /^[A-Za-z0-9_.-]{1,64}$/

const STATIC_KEYS = ['address']
const LIBVIRT_KEYS = ['cpus', 'ram', 'disk_size', 'seed', 'network']

/** What parsing needs to know about the daemon. */
export interface VmParseContext {
  readonly driver: DriverName
  /** The network a libvirt VM joins when its file names none. */
  readonly defaultNetwork: string
}

function parseDomain (entry: unknown, key: string, problems: Problem[]): DomainPort | undefined {
  if (typeof entry !== 'string') {
    problems.push({ key, message: `must be a string like "app.example.com->8080", not ${typeName(entry)} (${show(entry)})` })
    return undefined
  }
  const [host, portText, ...rest] = entry.split('->').map((s) => s.trim())
  if (rest.length > 0) {
    problems.push({ key, message: `${show(entry)} has more than one "->"` })
    return undefined
  }
  const problem = hostnameProblem(host)
  if (problem !== undefined) {
    problems.push({ key, message: `${show(entry)}: the domain ${problem}` })
    return undefined
  }
  let port = 80
  if (portText !== undefined) {
    port = Number(portText)
    if (!/^\d{1,5}$/.test(portText) || port < 1 || port > 65535) {
      problems.push({ key, message: `${show(entry)}: the port must be 1-65535, not ${show(portText)}` })
      return undefined
    }
  }
  return Object.freeze({ domain: host, port })
}

function parseRedirect (entry: unknown, key: string, problems: Problem[]): Redirect | undefined {
  if (!Array.isArray(entry) || entry.length < 2 || entry.length > 3) {
    problems.push({ key, message: `must be ['from.example.com', 'to.example.com'] or with a code as third item, not ${show(entry)}` })
    return undefined
  }
  const [from, to, codeValue] = entry as unknown[]
  let ok = true
  for (const [i, host] of [[0, from], [1, to]] as const) {
    if (typeof host !== 'string') {
      problems.push({ key: `${key}[${i}]`, message: `must be a domain string, not ${typeName(host)} (${show(host)})` })
      ok = false
      continue
    }
    const problem = hostnameProblem(host)
    if (problem !== undefined) {
      problems.push({ key: `${key}[${i}]`, message: `the domain ${problem}` })
      ok = false
    }
  }
  let code: RedirectCode = 302
  if (codeValue !== undefined) {
    const n = typeof codeValue === 'string' && /^\d+$/.test(codeValue) ? Number(codeValue) : codeValue
    if (!(REDIRECT_CODES as readonly unknown[]).includes(n)) {
      problems.push({ key: `${key}[2]`, message: `must be one of ${REDIRECT_CODES.map((c) => `'${c}'`).join(', ')}, not ${show(codeValue)}` })
      ok = false
    } else code = n as RedirectCode
  }
  if (!ok) return undefined
  if (from === to) {
    problems.push({ key, message: `${show(from)} redirects to itself` })
    return undefined
  }
  return Object.freeze({ from: from as string, to: to as string, code })
}

function list (reader: FieldReader, key: string): unknown[] {
  const value = reader.raw(key)
  if (value === undefined) return []
  if (!Array.isArray(value)) {
    reader.problem(key, `must be an array, not ${typeName(value)} (${show(value)})`)
    return []
  }
  return value
}

/**
 * Validates a parsed VM document (TOML table, or the same keys as JSON).
 * @throws FileInvalidError (VM_INVALID) listing every problem
 */
export function parseVmDefinition (doc: unknown, file: string, context: VmParseContext): VmDefinition {
  const problems: Problem[] = []
  if (!isTable(doc)) throw new FileInvalidError('VM_INVALID', file, [{ key: '(document)', message: `must be a table of keys, not ${typeName(doc)}` }])
  const r = new FieldReader(doc, '', problems)

  const name = r.string('name', '', (v) => VM_NAME.test(v) ? undefined : `${show(v)} is not a VM name (lower-case letters, digits, "-" and "_", at most 48, starting with a letter or digit)`)
  if (!r.has('name')) r.problem('name', 'is required')

  const domains: DomainPort[] = []
  list(r, 'domains').forEach((entry, i) => {
    const parsed = parseDomain(entry, `domains[${i}]`, problems)
    if (parsed !== undefined) domains.push(parsed)
  })
  const redirects: Redirect[] = []
  list(r, 'redirects').forEach((entry, i) => {
    const parsed = parseRedirect(entry, `redirects[${i}]`, problems)
    if (parsed !== undefined) redirects.push(parsed)
  })
  const seen = new Map<string, string>()
  const claim = (domain: string, key: string): void => {
    const first = seen.get(domain)
    if (first !== undefined) problems.push({ key, message: `${show(domain)} is already listed at ${first}` })
    else seen.set(domain, key)
  }
  domains.forEach((d, i) => { claim(d.domain, `domains[${i}]`) })
  redirects.forEach((d, i) => { claim(d.from, `redirects[${i}][0]`) })

  const redirectToHttps = r.boolean('redirect_to_https', true)
  const rateProfile = r.string('rate_profile', '', (v) => v === '' || PROFILE.test(v) ? undefined : `${show(v)} is not a rate profile name`)

  const definition: { -readonly [K in keyof VmDefinition]: VmDefinition[K] } = {
    name,
    domains: Object.freeze(domains),
    redirects: Object.freeze(redirects),
    redirectToHttps,
    rateProfile
  }
  const groupPorts: VmGroupPort[] = []
  const ports = parseVmPorts(list(r, 'ports'), problems, groupPorts)
  if (ports.length > 0) definition.ports = Object.freeze(ports)
  if (groupPorts.length > 0) definition.groupPorts = Object.freeze(groupPorts)
  const other = context.driver === 'static' ? LIBVIRT_KEYS : STATIC_KEYS
  for (const key of other) {
    if (r.has(key)) r.problem(key, `(value ${show(r.raw(key))}) is not used by the ${context.driver} driver`)
  }
  if (context.driver === 'static') {
    const address = r.string('address', '', (v) => {
      const target = parseTarget(`http://${v.includes(':') ? `[${v}]` : v}:80`)
      return typeof target === 'string' ? `${show(v)} is not an IP address or host name` : undefined
    })
    if (!r.has('address')) r.problem('address', 'is required by the static driver (the VM\'s IP or host name)')
    definition.address = address
  } else {
    definition.libvirt = Object.freeze({
      cpus: r.integer('cpus', 1, 1, 256),
      ramMiB: r.parsed('ram', '1G', parseSizeMiB),
      diskMiB: r.parsed('disk_size', '20G', parseSizeMiB),
      seed: r.string('seed', '', (v) => v === '' || VOLUME.test(v) ? undefined : `${show(v)} is not a volume name`),
      network: r.string('network', context.defaultNetwork, (v) => VOLUME.test(v) ? undefined : `${show(v)} is not a network name`)
    })
  }
  r.unknown()
  if (problems.length > 0) throw new FileInvalidError('VM_INVALID', file, problems)
  return Object.freeze(definition)
}

/**
 * Parses VM definition text (TOML).
 * @throws FileInvalidError (VM_INVALID), syntax errors included
 */
export function parseVmDefinitionText (text: string, file: string, context: VmParseContext): VmDefinition {
  let doc: Table
  try {
    doc = parseToml(text) as Table
  } catch (err) {
    throw new FileInvalidError('VM_INVALID', file, [{ key: '(syntax)', message: (err as Error).message.split('\n')[0] }])
  }
  return parseVmDefinition(doc, file, context)
}

/** Every domain the VM puts in the route table: served domains, then redirect sources. */
export function claimedDomains (definition: VmDefinition): string[] {
  return [...definition.domains.map((d) => d.domain), ...definition.redirects.map((r) => r.from)]
}

/** The public ports the VM claims (one namespace with domains in the registry). */
export function claimedPorts (definition: VmDefinition): string[] {
  // One exporter per group port, as mulchd's map of exported ports keeps one.
  return [...(definition.ports ?? []).map(portClaim), ...(definition.groupPorts ?? []).filter((p) => p.direction === 'export').map((p) => `tcp export ${p.port}@${p.group}`)]
}

/** The definition back in the file's own keys (what `vm info` shows and the API returns). */
export function definitionToJson (definition: VmDefinition): Record<string, unknown> {
  const json: Record<string, unknown> = {
    name: definition.name,
    domains: definition.domains.map((d) => d.port === 80 ? d.domain : `${d.domain}->${d.port}`),
    redirects: definition.redirects.map((r) => [r.from, r.to, String(r.code)]),
    redirect_to_https: definition.redirectToHttps
  }
  if (definition.rateProfile !== '') json.rate_profile = definition.rateProfile
  if (definition.ports !== undefined || definition.groupPorts !== undefined) json.ports = [...(definition.ports ?? []).map(vmPortToString), ...(definition.groupPorts ?? []).map(vmGroupPortToString)]
  if (definition.address !== undefined) json.address = definition.address
  if (definition.libvirt !== undefined) {
    json.cpus = definition.libvirt.cpus
    json.ram = `${definition.libvirt.ramMiB}M`
    json.disk_size = `${definition.libvirt.diskMiB}M`
    if (definition.libvirt.seed !== '') json.seed = definition.libvirt.seed
    json.network = definition.libvirt.network
  }
  return json
}
