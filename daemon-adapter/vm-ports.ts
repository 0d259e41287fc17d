/**
 * @module daemon-adapter/vm-ports
 * A VM definition's `ports`, in Mulch's VM TOML syntax (mulchd's vm_port.go), as far
 * as vmfront publishes them: public exports, which become the route file's `ports`
 * (SPEC §11).
 *   "22/tcp->@PUBLIC"                 the VM's port 22 on public port 22
 *   "22/tcp->@PUBLIC:2222"            ... on public port 2222
 *   "443/tcp->@PUBLIC (PROXY)"        PROXY protocol v1 to the VM's port 8443
 *   "443/tcp->@PUBLIC (PROXY:8444)"   ... to the VM's port 8444
 *   "2000-2004/tcp->@PUBLIC:3000"     a range (2 to 20 ports), one forward each
 * and Mulch's VM-to-VM groups, as mulchd's genPortsDB forwards them:
 *   "3306/tcp->@db"                   exports the VM's port 3306 to the group "db"
 *   "3306/tcp<-@db"                   imports it: this VM reaches the exporter's 3306 at
 *                                     the daemon's `vm_gateway`, port 9001 + the import's
 *                                     index among this VM's imports (Mulch's _PORT1...)
 * An import listener is shared by every importing VM and forwards by source IP.
 */

/** One published port of a VM. */
export interface VmPort {
  /** The port inside the VM. */
  readonly port: number
  /** The port the proxy listens on, on every interface. */
  readonly publicPort: number
  /** Mulch's PROXY port: connect there with a PROXY v1 header; 0 = none. */
  readonly proxyPort: number
}

/** A VM-to-VM port (Mulch's groups): an export, or an import and its index among the VM's imports. */
export interface VmGroupPort {
  readonly direction: 'export' | 'import'
  readonly port: number
  /** The group, without its "@". */
  readonly group: string
  /** Imports: 0 for the first import of the VM (listened on at 9001), 1 for the next... */
  readonly index: number
}

/** Mulch's first VM-to-VM forward port on the gateway (VMPortBaseForward). */
export const GROUP_BASE_PORT = 9001

/** Mulch's default PROXY protocol port inside the VM (VMPortProxyProtocoDefault). */
export const DEFAULT_PROXY_PORT = 8443
/** Mulch's largest port range (VMPortMaxRangeSize). */
export const MAX_RANGE = 20

const RANGE = /^(\d+)-(\d+)\/(\w+) *(<-|->) *(@[A-Za-z0-9_]+)(?::(\d+)(?:-(\d+))?)?$/
const SINGLE = /^(\d+)\/(\w+) *(<-|->) *(@[A-Za-z0-9_]+)(?::(\d+))?$/

function portNumber (text: string): number | undefined {
  const n = Number(text)
  return /^\d{1,5}$/.test(text) && n >= 1 && n <= 65535 ? n : undefined
}

/** Splits Mulch's trailing " (comment)". */
function splitComment (line: string): { body: string, comment: string } {
  const m = /^(.*) \((.*)\)$/.exec(line)
  return m === null ? { body: line.trim(), comment: '' } : { body: m[1].trim(), comment: m[2] }
}

/**
 * Parses a `ports` array. Problems are pushed as `{ key: "ports[i]", message }`.
 * Two entries on one public port are a problem here; across VMs the registry's
 * claims catch them.
 */
export function parseVmPorts (value: readonly unknown[], problems: Array<{ key: string, message: string }>, groups: VmGroupPort[] = []): VmPort[] {
  const ports: VmPort[] = []
  const seen = new Map<number, number>()
  const seenGroup = new Map<string, number>()
  let imports = 0
  value.forEach((entry, i) => {
    const key = `ports[${i}]`
    const bad = (message: string): void => { problems.push({ key, message }) }
    if (typeof entry !== 'string') {
      bad(`must be a string like "22/tcp->@PUBLIC:2222", not ${entry === null ? 'null' : Array.isArray(entry) ? 'an array' : typeof entry}`)
      return
    }
    const shown = JSON.stringify(entry.length > 80 ? entry.slice(0, 80) + '…' : entry)
    const { body, comment } = splitComment(entry)
    const range = RANGE.exec(body)
    const single = range === null ? SINGLE.exec(body) : null
    if (range === null && single === null) {
      bad(`${shown} is not a port in Mulch's syntax (e.g. "22/tcp->@PUBLIC:2222", "443/tcp->@PUBLIC (PROXY)")`)
      return
    }
    const [proto, arrow, group] = range !== null ? [range[3], range[4], range[5]] : [single![2], single![3], single![4]]
    if (proto.toLowerCase() !== 'tcp') { bad(`${shown}: only tcp is supported, not ${JSON.stringify(proto)}`); return }
    if (group !== '@PUBLIC') {
      // A VM-to-VM port: no public port, no PROXY header, no range (as mulchd).
      if (range !== null) { bad(`${shown}: a VM-to-VM port (${group}) cannot be a range`); return }
      if (single![5] !== undefined) { bad(`${shown}: a VM-to-VM port (${group}) has no public port`); return }
      if (comment !== '') { bad(`${shown}: a VM-to-VM port (${group}) takes no comment such as (PROXY)`); return }
      const port = portNumber(single![1])
      if (port === undefined) { bad(`${shown}: ports must be 1-65535`); return }
      const direction = arrow === '->' ? 'export' : 'import'
      const id = `${port} ${direction} ${group}`
      const first = seenGroup.get(id)
      if (first !== undefined) { bad(`${shown}: the same as ports[${first}]`); return }
      seenGroup.set(id, i)
      groups.push(Object.freeze({ direction, port, group: group.slice(1), index: direction === 'import' ? imports++ : 0 }))
      return
    }
    if (arrow !== '->') { bad(`${shown}: a public port can only be exported ("->"), not imported`); return }
    let proxyPort = 0
    if (comment === 'PROXY' || comment.startsWith('PROXY:')) {
      const p = comment === 'PROXY' ? DEFAULT_PROXY_PORT : portNumber(comment.slice(6))
      if (p === undefined) { bad(`${shown}: the PROXY port must be 1-65535`); return }
      proxyPort = p
    }
    const pairs: Array<[number, number]> = []
    if (range !== null) {
      const [from, to] = [portNumber(range[1]), portNumber(range[2])]
      if (from === undefined || to === undefined) { bad(`${shown}: ports must be 1-65535`); return }
      const size = to - from + 1
      if (size < 2) { bad(`${shown}: the range is too small`); return }
      if (size > MAX_RANGE) { bad(`${shown}: the range is too big (at most ${MAX_RANGE} ports)`); return }
      const pubFrom = range[6] === undefined ? from : portNumber(range[6])
      const pubTo = range[7] === undefined ? (pubFrom === undefined ? undefined : pubFrom + size - 1) : portNumber(range[7])
      if (pubFrom === undefined || pubTo === undefined || pubTo > 65535) { bad(`${shown}: public ports must be 1-65535`); return }
      if (pubTo - pubFrom !== to - from) { bad(`${shown}: the VM and public ranges differ in size`); return }
      for (let k = 0; k < size; k++) pairs.push([from + k, pubFrom + k])
    } else {
      const port = portNumber(single![1])
      const pub = single![5] === undefined ? port : portNumber(single![5])
      if (port === undefined || pub === undefined) { bad(`${shown}: ports must be 1-65535`); return }
      pairs.push([port, pub])
    }
    for (const [port, publicPort] of pairs) {
      const first = seen.get(publicPort)
      if (first !== undefined) { bad(`${shown}: public port ${publicPort} is already used by ports[${first}]`); return }
      seen.set(publicPort, i)
      ports.push(Object.freeze({ port, publicPort, proxyPort }))
    }
  })
  return ports
}

/** A port back in Mulch's syntax (what `vm info` shows). */
export function vmPortToString (p: VmPort): string {
  return `${p.port}/tcp->@PUBLIC${p.publicPort === p.port ? '' : `:${p.publicPort}`}${p.proxyPort === 0 ? '' : p.proxyPort === DEFAULT_PROXY_PORT ? ' (PROXY)' : ` (PROXY:${p.proxyPort})`}`
}

/** A VM-to-VM port back in Mulch's syntax. */
export function vmGroupPortToString (p: VmGroupPort): string {
  return `${p.port}/tcp${p.direction === 'export' ? '->' : '<-'}@${p.group}`
}

/** The claim a public port makes in the registry (one namespace with domains). */
export function portClaim (p: VmPort): string {
  return `tcp port ${p.publicPort}`
}
