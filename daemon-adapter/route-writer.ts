/**
 * @module daemon-adapter/route-writer
 * Turns the active revisions into a v1 route table (SPEC §4), checks it with the
 * proxy's own parser, and writes it atomically: a temp file in the same directory,
 * fsync, rename over the old file, fsync of the directory. The proxy therefore only
 * ever reads a whole file that it accepts.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { basename, dirname, join } from 'node:path'
import { parseRouteFileText, serializeRouteTable } from '../proxy/route-table.ts'
import type { RouteJson } from '../proxy/route-table.ts'
import type { RoutePortJson } from '../proxy/route-table.ts'
import { AdapterError } from './errors.ts'
import { GROUP_BASE_PORT } from './vm-ports.ts'
import type { Revision } from './registry.ts'

/** The temp files `writeFileAtomic` makes for `file` are named `.<name>.<pid>.<hex>.tmp`. */
function tempName (file: string): string {
  return join(dirname(file), `.${basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`)
}

/**
 * Removes temp files a killed writer left beside `file` (call at start, when no other
 * write of ours is in flight).
 * @returns the names removed
 */
export function removeStaleTempFiles (file: string): string[] {
  const prefix = `.${basename(file)}.`
  let names: string[]
  try {
    names = readdirSync(dirname(file)).filter((n) => n.startsWith(prefix) && n.endsWith('.tmp'))
  } catch {
    return []
  }
  for (const name of names) rmSync(join(dirname(file), name), { force: true })
  return names
}

function targetUrl (address: string, port: number): string {
  return `http://${address.includes(':') ? `[${address}]` : address}:${port}`
}

/** The routes of the given (active) revisions: one per served domain and per redirect. */
export function routesFor (revisions: readonly Revision[]): RouteJson[] {
  const routes: RouteJson[] = []
  for (const revision of revisions) {
    const def = revision.definition
    const common = (): Partial<RouteJson> => {
      const extra: Partial<RouteJson> = { vm: def.name }
      if (def.redirectToHttps) extra.redirect_to_https = true
      if (def.rateProfile !== '') extra.rate_profile = def.rateProfile
      return extra
    }
    for (const d of def.domains) routes.push({ domain: d.domain, target: targetUrl(revision.address, d.port), ...common() })
    for (const r of def.redirects) routes.push({ domain: r.from, redirect_to: r.to, redirect_code: r.code, ...common() })
  }
  return routes
}

/**
 * The TCP forwards of the given (active) revisions: their public ports, sorted by
 * public port, then their VM-to-VM imports as mulchd forwards them (genPortsDB):
 * one listener per import index on `gateway`:9001+index, shared by the importing
 * VMs and told apart by their source address, each to its group's exporter. An
 * import whose group port nobody exports is left out (mulchd: the same); without
 * a gateway no import is published.
 */
export function portsFor (revisions: readonly Revision[], gateway = ''): RoutePortJson[] {
  const ports: Array<RoutePortJson & { n: number }> = []
  const bracket = (ip: string): string => ip.includes(':') ? `[${ip}]` : ip
  const exporters = new Map<string, Revision>()
  for (const revision of revisions) {
    for (const p of revision.definition.groupPorts ?? []) if (p.direction === 'export') exporters.set(`${p.port}@${p.group}`, revision)
  }
  const imports: Array<RoutePortJson & { n: number, from: string }> = []
  for (const revision of gateway === '' ? [] : revisions) {
    for (const p of revision.definition.groupPorts ?? []) {
      const exporter = p.direction === 'import' ? exporters.get(`${p.port}@${p.group}`) : undefined
      if (exporter === undefined) continue
      imports.push({ n: GROUP_BASE_PORT + p.index, from: revision.address, listen: `${bracket(gateway)}:${GROUP_BASE_PORT + p.index}`, target: `${bracket(exporter.address)}:${p.port}`, allow: [revision.address] })
    }
  }
  for (const revision of revisions) {
    const host = revision.address.includes(':') ? `[${revision.address}]` : revision.address
    for (const p of revision.definition.ports ?? []) {
      // Mulch's PROXY port: connect there and send the v1 header (mulch-proxy's PROXYProtoPort).
      const json: RoutePortJson & { n: number } = { n: p.publicPort, listen: `:${p.publicPort}`, target: `${host}:${p.proxyPort === 0 ? p.port : p.proxyPort}` }
      if (p.proxyPort !== 0) json.proxy_protocol = 1
      ports.push(json)
    }
  }
  imports.sort((a, b) => a.n - b.n || (a.from < b.from ? -1 : a.from > b.from ? 1 : 0))
  return [...ports.sort((a, b) => a.n - b.n).map(({ n: _n, ...p }) => p), ...imports.map(({ n: _n, from: _from, ...p }) => p)]
}

/**
 * Serialises `routes` and checks the text with `parseRouteFileText`, as the proxy
 * will read it.
 * @throws AdapterError ROUTES_INVALID listing the parser's problems
 */
export function renderRouteFile (routes: readonly RouteJson[], ports: readonly RoutePortJson[] = []): string {
  const text = serializeRouteTable(routes, ports)
  const check = parseRouteFileText(text)
  if (!check.ok) {
    throw new AdapterError('ROUTES_INVALID', `the route table would be invalid: ${check.errors.map((e) => `${e.path}: ${e.message}`).join('; ')}`)
  }
  return text
}

/** Reads the current file, or undefined when it is missing or unreadable. */
export function readRouteFile (file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8')
  } catch {
    return undefined
  }
}

/**
 * Writes `text` to `file` atomically (mode 0644, so a proxy running as another user
 * can read it). Creates the directory if it is missing.
 * @throws AdapterError ROUTES_WRITE_FAILED
 */
export function writeFileAtomic (file: string, text: string): void {
  const dir = dirname(file)
  const tmp = tempName(file)
  try {
    mkdirSync(dir, { recursive: true, mode: 0o755 })
    const fd = openSync(tmp, 'wx', 0o644)
    try {
      writeSync(fd, text)
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
    renameSync(tmp, file)
    // The rename is only durable once the directory entry is on disk.
    const dirFd = openSync(dir, 'r')
    try {
      fsyncSync(dirFd)
    } finally {
      closeSync(dirFd)
    }
  } catch (err) {
    rmSync(tmp, { force: true })
    throw new AdapterError('ROUTES_WRITE_FAILED', `cannot write the route file ${file}: ${(err as Error).message}`, { cause: err })
  }
}
