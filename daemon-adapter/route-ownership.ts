/**
 * @module daemon-adapter/route-ownership
 * Whether the daemon may overwrite the route file (SPEC §14 on §8). It may when the
 * file is missing, when its content is what the daemon last wrote (or adopted with
 * `vmfront vm import-routes`: the SHA-256 is kept in the registry), when it holds no
 * route at all, or when it holds exactly the routes about to be written. Anything
 * else is someone else's data, hand-written or left by another tool: the daemon
 * refuses to touch it and says how to proceed.
 */
import { createHash } from 'node:crypto'
import { readFileSync, statSync } from 'node:fs'
import { parseRouteFileText, serializeRouteTable } from '../proxy/route-table.ts'
import { AdapterError } from './errors.ts'

/** What is found at the route file's path. */
export type RouteFileState =
  | { readonly kind: 'absent' }
  /** The content the registry recorded as written (or adopted) by the daemon. */
  | { readonly kind: 'recorded' }
  /** Empty, `{}` or a v1 file with no route: nothing to lose. */
  | { readonly kind: 'no-routes' }
  /** Not recorded, but the very routes the daemon is about to write (e.g. written before hashes were recorded). */
  | { readonly kind: 'same-routes' }
  /** Someone else's: `detail` says what it holds ("4 routes", "text that is not a valid route file"). */
  | { readonly kind: 'foreign', readonly detail: string }

/** SHA-256 of `text` as UTF-8, lower-case hex: what the registry records. */
export function sha256Hex (text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex')
}

function holdsNoRoutes (text: string): boolean {
  if (text.trim() === '') return true
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch {
    return false
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return false
  const keys = Object.keys(doc)
  if (keys.length === 0) return true
  const routes = (doc as { routes?: unknown }).routes
  return keys.every((k) => k === 'version' || k === 'routes') && Array.isArray(routes) && routes.length === 0
}

/** The routes of a route file text in one canonical form, or undefined when it is not a valid file. */
function canonicalRoutes (text: string): string | undefined {
  const parsed = parseRouteFileText(text)
  return parsed.ok ? serializeRouteTable(parsed.table.routes) : undefined
}

/**
 * Looks at `file` before the daemon writes `next` over it. Never blocks on a FIFO
 * or a device: anything but a regular file is foreign.
 * @param recordedHash the registry's `routesFileHash()`
 */
export function inspectRouteFile (file: string, recordedHash: string | undefined, next: string): RouteFileState {
  let text: string
  try {
    const stat = statSync(file)
    if (!stat.isFile()) return { kind: 'foreign', detail: 'it is not a regular file' }
    text = readFileSync(file, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT') return { kind: 'absent' }
    return { kind: 'foreign', detail: `it cannot be read (${code ?? (err as Error).message}), so the daemon cannot tell` }
  }
  if (recordedHash !== undefined && sha256Hex(text) === recordedHash) return { kind: 'recorded' }
  if (holdsNoRoutes(text)) return { kind: 'no-routes' }
  const parsed = parseRouteFileText(text)
  if (!parsed.ok) return { kind: 'foreign', detail: 'it holds text that is not a valid route file' }
  if (serializeRouteTable(parsed.table.routes) === canonicalRoutes(next)) return { kind: 'same-routes' }
  const count = parsed.table.routes.length
  return { kind: 'foreign', detail: `it holds ${count} route${count === 1 ? '' : 's'} the daemon did not write` }
}

/**
 * The error for a foreign route file: names the file and the commands that proceed.
 * `configFile` is the daemon's config (undefined for the built-in defaults);
 * `when` says whether the daemon is starting (exit 2) or running (a change refused).
 */
export function foreignRouteFileError (file: string, detail: string, configFile: string | undefined, when: 'start' | 'running'): AdapterError {
  const config = configFile === undefined ? '' : ` --config ${configFile}`
  const then = when === 'start' ? 'then start the daemon again' : 'then send the daemon SIGHUP to write the file'
  const message = `the route file ${file} was not written by this daemon (${detail}); it will not overwrite it. ` +
    `To adopt its routes as static VMs run: vmfront vm import-routes ${file}${config}, ${then}. ` +
    'To discard them instead, move the file away.'
  return new AdapterError('ROUTES_FOREIGN', message, { details: { file } })
}
