/**
 * @module proxy/reload
 * Loads the route file all or nothing: read, validate completely, hand the new
 * entries to the served table (served-routes.ts), which swaps one reference. Any problem keeps the previous table, is logged with
 * its JSON path and counted. Reloads are serialised and bursts coalesce, so a storm
 * of SIGHUPs costs at most one reload in flight and one queued. The file is read by
 * route-file-read (regular files only, never a blocking open, size-capped), and a
 * read that still has not returned after `readTimeoutMs` (a hung network file
 * system) fails the reload instead of wedging every later one.
 *
 * A big file is parsed off the event loop: in a worker thread (route-parse-client),
 * its routes brought back and indexed a slice at a time, so requests are served
 * while a 100,000-route file loads (figures: README). The swap stays one assignment.
 */
import { createHash } from 'node:crypto'
import type { Logger } from './log.ts'
import type { ProxyMetrics } from './metrics.ts'
import type { ServedRoutes } from './served-routes.ts'
import { isEmptyLegacyTable, parseRouteFileText, type Route, type RouteProblem, type RouteTable } from './route-table.ts'
import { createRouteParseClient, type RouteParseClient } from './route-parse-client.ts'
import { readRouteFile, RouteFileReadError } from './route-file-read.ts'
import type { RouteEntry } from './router.ts'
import { servedProfileName } from './rate-profile.ts'

export interface ReloadStatus {
  result: 'success' | 'failure' | 'never'
  at: string | undefined
  lastSuccessAt: string | undefined
  routes: number
  file: string
  format: string | undefined
  sha256: string | undefined
  /** The first STATUS_PROBLEMS problems of the last reload; the counts cover them all. */
  errors: RouteProblem[]
  warnings: RouteProblem[]
  errorCount: number
  warningCount: number
}

/** Problems logged one per line before the rest are summarised in one line. */
export const LOGGED_PROBLEMS = 20
/** Problems kept in the status (`/status`, the dump). */
const STATUS_PROBLEMS = 100
/** A read of the route file that has not returned by then is given up on. */
const READ_TIMEOUT_MS = 10_000
/**
 * Files up to this many characters (about 750 routes, under 5 ms to parse) are
 * parsed on the main thread: the worker's round trips would cost more than they save.
 */
export const INLINE_PARSE_MAX_CHARS = 64 * 1024

export interface RouteReloader {
  /** Loads the file now (coalescing with a reload already running). */
  reload (reason: string): Promise<ReloadStatus>
  /** The next reload parses the file even if unchanged (rate profiles changed: routes re-resolve theirs). */
  forget (): void
  /** The last good table (empty before the first load). */
  table (): RouteTable
  status (): ReloadStatus
  /**
   * True while a read of the file has not returned, even one given up on. Node
   * joins its thread pool at exit, so such a read would hold the exit too.
   */
  readPending (): boolean
  /** Stops the parse worker (shutdown); a reload in flight in it fails. */
  close (): Promise<void>
}

export interface ReloaderOptions {
  file: string
  /** Where the file's entries go into service (merged there with chained domains). */
  served: Pick<ServedRoutes, 'serveFile'>
  logger: Logger
  metrics: ProxyMetrics
  /** Whether a rate profile exists; unknown names fall back to "default". */
  hasProfile: (name: string) => boolean
  /** Told of every new table (the certificate policy reads it). */
  onTable?: (table: RouteTable) => void
  /** Reads the file (tests inject a slow one); default readRouteFile. */
  readFile?: (file: string) => Promise<string>
  /** Default 10 s. */
  readTimeoutMs?: number
  /** Parses big files off the event loop; default: a worker started on first need. */
  parser?: RouteParseClient
  /** Files up to this size parse on the main thread; default INLINE_PARSE_MAX_CHARS. */
  inlineMaxChars?: number
}

/** Route entries by domain, collected as routes arrive. */
interface Collected {
  map: Map<string, RouteEntry>
  warnings: RouteProblem[]
  warningCount: number
}

/** The emptied-file refusal: a bare `{}` where a version 1 table is served. */
function emptiedProblem (served: number): RouteProblem {
  return { path: '$', message: `is a bare {} but the ${served} route${served === 1 ? '' : 's'} in service came from a version 1 file: refused as an emptied file; to empty the table, write {"version":1,"routes":[]}` }
}

/** Routes cloned from the worker are plain objects: frozen like the parser's. */
function freezeRoute (route: Route): Route {
  if (route.target !== undefined) Object.freeze(route.target)
  return Object.freeze(route)
}

const EMPTY: RouteTable = Object.freeze({ version: 1, format: 'v1', routes: Object.freeze([]) })

export function createRouteReloader (options: ReloaderOptions): RouteReloader {
  const { logger, metrics } = options
  const read = options.readFile ?? readRouteFile
  const readTimeoutMs = options.readTimeoutMs ?? READ_TIMEOUT_MS
  let current: RouteTable = EMPTY
  /** The format of the file the table in service came from (undefined: none yet). */
  let servedFormat: RouteTable['format'] | undefined
  let lastHash: string | undefined
  let loadedOnce = false
  const status: ReloadStatus = { result: 'never', at: undefined, lastSuccessAt: undefined, routes: 0, file: options.file, format: undefined, sha256: undefined, errors: [], warnings: [], errorCount: 0, warningCount: 0 }
  let running: Promise<ReloadStatus> | undefined
  let queued: Promise<ReloadStatus> | undefined
  let pendingRead: { since: number } | undefined
  const inlineMaxChars = options.inlineMaxChars ?? INLINE_PARSE_MAX_CHARS
  let parser = options.parser

  /**
   * Logs the first LOGGED_PROBLEMS problems one per line and the rest as one
   * count: 100,000 bad routes make 21 lines, not 100,000.
   */
  function logProblems (level: 'error' | 'warn', msg: string, problems: readonly RouteProblem[], count: number): void {
    const shown = Math.min(problems.length, LOGGED_PROBLEMS)
    for (let i = 0; i < shown; i++) logger[level](msg, { file: options.file, path: problems[i].path, problem: problems[i].message })
    if (count > shown) {
      logger[level](`${msg}s not logged`, { file: options.file, more: count - shown, summary: `and ${(count - shown).toLocaleString('en-US')} more (vmfront routes check --all FILE lists them)` })
    }
  }

  function fail (errors: RouteProblem[], errorCount: number, warnings: RouteProblem[], warningCount: number, reason: string): ReloadStatus {
    status.result = 'failure'
    status.at = new Date().toISOString()
    status.errors = errors.slice(0, STATUS_PROBLEMS)
    status.warnings = warnings.slice(0, STATUS_PROBLEMS)
    status.errorCount = errorCount
    status.warningCount = warningCount
    metrics.routeReloads.inc({ result: 'failure' })
    metrics.lastReloadSuccessful.set(0)
    logProblems('error', 'route file problem', errors, errorCount)
    logger.error('route reload failed: still serving the previous table', { file: options.file, reason, errors: errorCount, routes: status.routes })
    return { ...status }
  }

  function collector (fileWarnings: RouteProblem[], fileWarningCount: number): { collected: Collected, add: (route: Route, index: number) => void } {
    const collected: Collected = { map: new Map(), warnings: fileWarnings.slice(0, STATUS_PROBLEMS), warningCount: fileWarningCount }
    const add = (route: Route, index: number): void => {
      const profile = servedProfileName(route.rateProfile, options.hasProfile)
      if (route.rateProfile !== undefined && profile !== route.rateProfile) {
        collected.warningCount++
        if (collected.warnings.length < STATUS_PROBLEMS) collected.warnings.push({ path: `$.routes[${index}].rate_profile`, message: `unknown rate profile "${route.rateProfile}": using "default"` })
      }
      const entry: RouteEntry = { domain: route.domain, route, profile }
      collected.map.set(entry.domain, entry)
    }
    return { collected, add }
  }

  function succeed (table: RouteTable, fileWarnings: RouteProblem[], fileWarningCount: number, hash: string | undefined, reason: string): ReloadStatus {
    const { collected, add } = collector(fileWarnings, fileWarningCount)
    for (const [i, route] of table.routes.entries()) add(route, i)
    return commit(table, collected, hash, reason)
  }

  function commit (table: RouteTable, collected: Collected, hash: string | undefined, reason: string): ReloadStatus {
    const { warnings, warningCount } = collected
    current = table
    servedFormat = hash === undefined ? undefined : table.format
    lastHash = hash
    options.served.serveFile(collected.map)
    options.onTable?.(table)
    const now = new Date()
    Object.assign(status, { result: 'success', at: now.toISOString(), lastSuccessAt: now.toISOString(), routes: table.routes.length, format: table.format, sha256: hash, errors: [], warnings: warnings.slice(0, STATUS_PROBLEMS), errorCount: 0, warningCount })
    metrics.routeReloads.inc({ result: 'success' })
    metrics.lastReloadSuccessful.set(1)
    metrics.lastReloadSuccessTimestamp.set(now.getTime() / 1000)
    logProblems('warn', 'route file warning', warnings, warningCount)
    logger.info('routes loaded', { file: options.file, reason, routes: table.routes.length, format: table.format })
    return { ...status }
  }

  /** Reads the file, giving up after readTimeoutMs; at most one read is ever outstanding. */
  async function readBounded (): Promise<string> {
    if (pendingRead !== undefined) {
      throw new RouteFileReadError(`has not finished being read since ${Math.round((Date.now() - pendingRead.since) / 1000)} s (a hung file system?): not read again until that read returns`)
    }
    pendingRead = { since: Date.now() }
    const reading = read(options.file)
    reading.then(() => { pendingRead = undefined }, () => { pendingRead = undefined })
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((resolve, reject) => {
      timer = setTimeout(() => { reject(new RouteFileReadError(`could not be read within ${readTimeoutMs / 1000} s (a hung file system?): gave up`)) }, readTimeoutMs)
      timer.unref()
    })
    try {
      return await Promise.race([reading, timeout])
    } finally {
      clearTimeout(timer)
    }
  }

  async function load (reason: string): Promise<ReloadStatus> {
    let text: string
    try {
      text = await readBounded()
    } catch (err) {
      if (err instanceof RouteFileReadError && err.missing && !loadedOnce) {
        loadedOnce = true
        logger.warn('route file missing: serving an empty table', { file: options.file })
        return succeed(EMPTY, [], 0, undefined, reason)
      }
      const message = err instanceof RouteFileReadError ? err.message : `cannot be read: ${(err as Error).message}`
      return fail([{ path: '$', message }], 1, [], 0, reason)
    }
    loadedOnce = true
    if (text.length > inlineMaxChars) return await loadInWorker(text, reason)
    const hash = createHash('sha256').update(text).digest('hex')
    if (hash === lastHash && status.result !== 'never') return unchanged(reason)
    const parsed = parseRouteFileText(text)
    if (!parsed.ok) return fail(parsed.errors, parsed.errorCount, parsed.warnings, parsed.warningCount, reason)
    // mulchd writes `{}` when no VM has a domain, so a bare `{}` must load beside
    // it. Where the table came from a version 1 file (the vmfront daemon, or a
    // hand-written file), `{}` is an emptied file, not a decision: refused.
    if (isEmptyLegacyTable(parsed.table) && servedFormat === 'v1') {
      return fail([emptiedProblem(current.routes.length)], 1, parsed.warnings, parsed.warningCount, reason)
    }
    return succeed(parsed.table, parsed.warnings, parsed.warningCount, hash, reason)
  }

  function unchanged (reason: string): ReloadStatus {
    logger.info('route file unchanged', { file: options.file, reason })
    metrics.routeReloads.inc({ result: 'success' })
    metrics.lastReloadSuccessful.set(1)
    status.result = 'success'
    status.at = new Date().toISOString()
    status.errors = []
    status.errorCount = 0
    return { ...status }
  }

  /**
   * Hashes and validates in the worker, then takes the routes a slice at a time
   * (each slice one event-loop turn), indexing them as they come. Nothing is
   * served from them until the one assignment in swap.
   */
  async function loadInWorker (text: string, reason: string): Promise<ReloadStatus> {
    parser ??= createRouteParseClient({ onWorkerExit: (why) => { logger.warn('route parse worker stopped', { file: options.file, reason: why }) } })
    const result = await parser.parse(text, status.result === 'never' ? undefined : lastHash, STATUS_PROBLEMS)
    if (result.kind === 'unchanged') return unchanged(reason)
    if (result.kind === 'invalid') return fail(result.errors, result.errorCount, result.warnings, result.warningCount, reason)
    if (result.format === 'mulch-legacy' && result.count === 0 && servedFormat === 'v1') {
      parser.release()
      return fail([emptiedProblem(current.routes.length)], 1, result.warnings, result.warningCount, reason)
    }
    const { collected, add } = collector(result.warnings, result.warningCount)
    const routes: Route[] = []
    await parser.take(result.count, (slice, from) => {
      for (let k = 0; k < slice.length; k++) {
        const route = freezeRoute(slice[k])
        routes.push(route)
        add(route, from + k)
      }
    })
    if (routes.length !== result.count) throw new Error(`the route parse worker returned ${routes.length} of ${result.count} routes`)
    const table: RouteTable = Object.freeze({ version: result.version, format: result.format, routes: Object.freeze(routes) })
    return commit(table, collected, result.hash, reason)
  }

  function reload (reason: string): Promise<ReloadStatus> {
    if (running === undefined) {
      running = load(reason).catch((err: unknown) => fail([{ path: '$', message: (err as Error).message }], 1, [], 0, reason)).finally(() => { running = undefined })
      return running
    }
    // One reload is running: one more is queued, and later requests share it.
    queued ??= running.then(() => {
      queued = undefined
      return reload(reason)
    })
    return queued
  }

  return {
    reload,
    forget: () => { lastHash = undefined },
    table: () => current,
    status: () => ({ ...status }),
    readPending: () => pendingRead !== undefined,
    close: async () => { await parser?.close() }
  }
}
