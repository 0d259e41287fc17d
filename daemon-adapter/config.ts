/**
 * @module daemon-adapter/config
 * The daemon configuration (SPEC §8): read the TOML file once, check every key,
 * apply defaults, and return a frozen object. Unknown keys are errors.
 */
import { readFileSync, existsSync } from 'node:fs'
import { hostname } from 'node:os'
import { isIP } from 'node:net'
import { dirname, resolve } from 'node:path'
import { parse as parseToml } from 'smol-toml'
import { AdapterError, FileInvalidError } from './errors.ts'
import type { Problem } from './errors.ts'
import { FieldReader, show } from './toml-fields.ts'
import type { Table } from './toml-fields.ts'
import { parseDuration } from './units.ts'
import { LOG_LEVELS } from './log.ts'
import type { LogLevel } from './log.ts'

/** Where `vmfront daemon` and `vmfront vm` look for the config when none is given. */
export const DEFAULT_CONFIG_PATH = '/etc/vmfront/daemon.toml'

export const DRIVERS = ['static', 'libvirt'] as const
export type DriverName = typeof DRIVERS[number]

/** A `host:port` the API listens on. */
export interface ListenAddress {
  readonly host: string
  readonly port: number
}

export interface LibvirtConfig {
  /** libvirt connection URI given to `virsh -c`. */
  readonly uri: string
  /** The virsh executable. */
  readonly virsh: string
  /** The libvirt network VMs join, and where their static DHCP entries go (a VM file may override it). */
  readonly network: string
  /** The storage pool that holds each revision's disk volume. */
  readonly pool: string
  /** First and last IPv4 address handed to VMs (inside the network's subnet). */
  readonly ipRange: { readonly first: string, readonly last: string }
  /** `<domain type=...>`: "kvm" in production, anything the hypervisor accepts. */
  readonly domainType: string
  /** Bound on each virsh invocation, in ms. */
  readonly commandTimeoutMs: number
}

export interface ChainConfig {
  /** The parent's chain API; "" means this host is not a chain child. */
  readonly parentUrl: string
  readonly psk: string
  /** This child's name at the parent. */
  readonly name: string
  /** Bound on each conflict check, in ms. */
  readonly timeoutMs: number
  /** What to do when the parent cannot be asked: refuse the change (default) or allow it with a warning. */
  readonly onUnreachable: 'refuse' | 'allow'
  /**
   * The parent's protocol: vmfront's chain API, mulch-proxy's (`POST /domains/conflicts`
   * with `Mulch-PSK`), or "auto": vmfront's first, Mulch's when that path is a 404.
   */
  readonly parentProtocol: 'auto' | 'vmfront' | 'mulch'
  /** This host's proxy URL as its parent knows it (Mulch's `ForwardTo`: its own domains are no conflict). */
  readonly childUrl: string
}

export interface DaemonConfig {
  /** The file this was read from, or "(defaults)". */
  readonly file: string
  readonly dataDir: string
  readonly routesFile: string
  readonly proxyPidFile: string
  /** Where VM-to-VM imports (`<-@group`) listen: the host's address on the VMs' network; "" = none. */
  readonly vmGateway: string
  readonly driver: DriverName
  readonly listen: ListenAddress
  /** "" = generate a key into data_dir/api-key at first start. */
  readonly apiKeysFile: string
  readonly logLevel: LogLevel
  /** Changes within this window after the first are signalled to the proxy as one SIGHUP. */
  readonly reloadDebounceMs: number
  /** How long a new revision has to come up before it is abandoned. */
  readonly upTimeoutMs: number
  /** How "up" is decided after the driver started a revision. */
  readonly upProbe: 'tcp' | 'none'
  /** After a switch is signalled, how long the old revision keeps running before teardown. */
  readonly retireDrainMs: number
  readonly libvirt: LibvirtConfig
  readonly chain: ChainConfig
}

function checkListen (text: string): ListenAddress | string {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text)
  if (match === null) return `"${text}" is not host:port (e.g. "127.0.0.1:8686", "[::1]:8686")`
  const host = match[1] ?? match[2]
  const port = Number(match[3])
  if (port > 65535) return `"${text}" has port ${port} (at most 65535)`
  if (match[1] !== undefined && isIP(host) !== 6) return `"${text}" has an invalid IPv6 address`
  return { host, port }
}

function ipv4ToNumber (ip: string): number {
  return ip.split('.').reduce((acc, part) => acc * 256 + Number(part), 0)
}

function checkIpRange (text: string): { first: string, last: string } | string {
  const [first, last] = text.split('-').map((s) => s.trim())
  if (first === undefined || last === undefined || isIP(first) !== 4 || isIP(last) !== 4) {
    return `"${text}" is not an IPv4 range (write "192.168.122.100-192.168.122.199")`
  }
  if (ipv4ToNumber(first) > ipv4ToNumber(last)) return `"${text}" starts after it ends`
  return { first, last }
}

function checkUrl (text: string): string | undefined {
  if (text === '') return undefined
  try {
    const url = new URL(text)
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return `"${text}" must be an http:// or https:// URL`
  } catch {
    return `"${text}" is not a URL`
  }
  return undefined
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/
const PATH_SAFE = (v: string): string | undefined => (v === '' ? 'must not be empty' : /[\0\n\r]/.test(v) ? `${show(v)} contains a control character` : undefined)

/**
 * Validates a parsed TOML document. Relative paths resolve against the config
 * file's directory (as the proxy's config does).
 * @throws FileInvalidError (CONFIG_INVALID) listing every problem
 */
export function parseDaemonConfig (doc: Table, file: string): DaemonConfig {
  const problems: Problem[] = []
  const top = new FieldReader(doc, '', problems)

  const dataDir = top.string('data_dir', '/var/lib/vmfront-daemon', PATH_SAFE)
  const routesFile = top.string('routes_file', '/var/lib/vmfront/routes.json', PATH_SAFE)
  const proxyPidFile = top.string('proxy_pid_file', '/var/lib/vmfront/proxy.pid', PATH_SAFE)
  const driver = top.choice('driver', 'static', DRIVERS)
  // Mulch's gateway: the host's address on the VMs' network, where VM-to-VM imports listen.
  const vmGateway = top.string('vm_gateway', '', (v) => (v === '' || isIP(v) !== 0 ? undefined : `${show(v)} is not an IP address (the host's address on the VMs' network, e.g. "10.0.0.1")`))
  const listen = top.parsed('listen', '127.0.0.1:8686', checkListen)
  const apiKeysFile = top.string('api_keys_file', '')
  const logLevel = top.choice('log_level', 'info', LOG_LEVELS)
  const reloadDebounceMs = top.parsed('reload_debounce', '250ms', parseDuration)
  const upTimeoutMs = top.parsed('up_timeout', '120s', parseDuration)
  const upProbeText = top.choice('up_probe', 'auto', ['auto', 'tcp', 'none'])
  const retireDrainMs = top.parsed('retire_drain', '2s', parseDuration)

  const lv = new FieldReader(top.table('libvirt'), 'libvirt', problems)
  const libvirt: LibvirtConfig = {
    uri: lv.string('uri', 'qemu:///system', (v) => (v === '' ? 'must not be empty' : undefined)),
    virsh: lv.string('virsh', 'virsh', PATH_SAFE),
    network: lv.string('network', 'default', (v) => (NAME.test(v) ? undefined : `${show(v)} is not a libvirt network name`)),
    pool: lv.string('pool', 'default', (v) => (NAME.test(v) ? undefined : `${show(v)} is not a libvirt pool name`)),
    ipRange: lv.parsed('ip_range', '192.168.122.100-192.168.122.199', checkIpRange),
    domainType: lv.string('domain_type', 'kvm', (v) => (/^[a-z0-9]+$/.test(v) ? undefined : `${show(v)} is not a domain type (e.g. "kvm", "qemu")`)),
    commandTimeoutMs: lv.parsed('command_timeout', '60s', parseDuration)
  }
  lv.unknown()

  const ch = new FieldReader(top.table('chain'), 'chain', problems)
  const chain: ChainConfig = {
    parentUrl: ch.string('parent_url', '', checkUrl).replace(/\/+$/, ''),
    psk: ch.string('psk', ''),
    name: ch.string('name', '') || hostname(),
    timeoutMs: ch.parsed('timeout', '5s', parseDuration),
    onUnreachable: ch.choice('on_unreachable', 'refuse', ['refuse', 'allow']),
    parentProtocol: ch.choice('parent_protocol', 'auto', ['auto', 'vmfront', 'mulch']),
    childUrl: ch.string('child_url', '', checkUrl).replace(/\/+$/, '')
  }
  if (chain.parentUrl !== '' && chain.psk.length < 16) {
    ch.problem('psk', `must be at least 16 characters when chain.parent_url is set (it has ${chain.psk.length})`)
  }
  ch.unknown()
  top.unknown()

  if (problems.length > 0) throw new FileInvalidError('CONFIG_INVALID', file, problems)
  const base = file.startsWith('(') ? process.cwd() : dirname(resolve(file))
  const path = (p: string): string => resolve(base, p)
  const upProbe = upProbeText === 'auto' ? (driver === 'libvirt' ? 'tcp' : 'none') : upProbeText as 'tcp' | 'none'
  return Object.freeze({
    file,
    dataDir: path(dataDir),
    routesFile: path(routesFile),
    proxyPidFile: path(proxyPidFile),
    vmGateway,
    driver,
    listen: Object.freeze(listen),
    apiKeysFile: apiKeysFile === '' ? '' : path(apiKeysFile),
    logLevel,
    reloadDebounceMs,
    upTimeoutMs,
    upProbe,
    retireDrainMs,
    libvirt: Object.freeze({ ...libvirt, ipRange: Object.freeze(libvirt.ipRange) }),
    chain: Object.freeze(chain)
  })
}

/**
 * Reads and validates the daemon config. Without a path it reads
 * `VMFRONT_DAEMON_CONFIG`, then `/etc/vmfront/daemon.toml` if it exists, else uses
 * the built-in defaults.
 * @throws AdapterError CONFIG_UNREADABLE, FileInvalidError CONFIG_INVALID
 */
export function loadDaemonConfig (path?: string, env: NodeJS.ProcessEnv = process.env): DaemonConfig {
  const file = path ?? env.VMFRONT_DAEMON_CONFIG ?? (existsSync(DEFAULT_CONFIG_PATH) ? DEFAULT_CONFIG_PATH : undefined)
  if (file === undefined) return parseDaemonConfig({}, '(defaults)')
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new AdapterError('CONFIG_UNREADABLE', `${file}: cannot read the daemon config: ${(err as Error).message}`, { cause: err })
  }
  let doc: Table
  try {
    doc = parseToml(text) as Table
  } catch (err) {
    throw new FileInvalidError('CONFIG_INVALID', file, [{ key: '(syntax)', message: (err as Error).message.split('\n')[0] }])
  }
  return parseDaemonConfig(doc, file)
}
