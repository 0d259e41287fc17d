/**
 * @module proxy/reload
 * Loads the route file all or nothing: read, validate completely, build a new
 * Router, swap one reference. Any problem keeps the previous table, is logged with
 * its JSON path and counted. Reloads are serialised and bursts coalesce, so a storm
 * of SIGHUPs costs at most one reload in flight and one queued.
 */
import { readFile } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import type { Logger } from './log.ts'
import type { ProxyMetrics } from './metrics.ts'
import type { RouterHolder } from './handler.ts'
import { parseRouteFileText, type RouteProblem, type RouteTable } from './route-table.ts'
import { Router, type RouteEntry } from './router.ts'

export interface ReloadStatus {
  result: 'success' | 'failure' | 'never'
  at: string | undefined
  lastSuccessAt: string | undefined
  routes: number
  file: string
  format: string | undefined
  sha256: string | undefined
  errors: RouteProblem[]
  warnings: RouteProblem[]
}

export interface RouteReloader {
  /** Loads the file now (coalescing with a reload already running). */
  reload (reason: string): Promise<ReloadStatus>
  /** Rebuilds the router from the last good table (e.g. when chained domains change). */
  rebuild (): void
  /** The last good table (empty before the first load). */
  table (): RouteTable
  status (): ReloadStatus
}

export interface ReloaderOptions {
  file: string
  holder: RouterHolder
  logger: Logger
  metrics: ProxyMetrics
  /** Whether a rate profile exists; unknown names fall back to "default". */
  hasProfile: (name: string) => boolean
  /** Domains chained to children (parent mode), merged after the file's routes. */
  chainEntries?: () => Iterable<RouteEntry>
  /** Told of every new table (the certificate policy reads it). */
  onTable?: (table: RouteTable) => void
}

const EMPTY: RouteTable = Object.freeze({ version: 1, format: 'v1', routes: Object.freeze([]) })

export function createRouteReloader (options: ReloaderOptions): RouteReloader {
  const { logger, metrics } = options
  let current: RouteTable = EMPTY
  let entries: RouteEntry[] = []
  let lastHash: string | undefined
  let loadedOnce = false
  const status: ReloadStatus = { result: 'never', at: undefined, lastSuccessAt: undefined, routes: 0, file: options.file, format: undefined, sha256: undefined, errors: [], warnings: [] }
  let running: Promise<ReloadStatus> | undefined
  let queued: Promise<ReloadStatus> | undefined

  function swap (): void {
    const merged = new Map<string, RouteEntry>()
    for (const entry of entries) merged.set(entry.domain, entry)
    for (const entry of options.chainEntries?.() ?? []) {
      if (merged.has(entry.domain)) {
        logger.warn('chained domain shadowed by a route of the file', { domain: entry.domain, child: entry.chain?.child })
        continue
      }
      merged.set(entry.domain, entry)
    }
    const router = new Router(merged.values())
    options.holder.router = router
    metrics.routes.set(router.size)
    metrics.retainDomains(new Set(router.entries.keys()))
  }

  function fail (errors: RouteProblem[], warnings: RouteProblem[], reason: string): ReloadStatus {
    status.result = 'failure'
    status.at = new Date().toISOString()
    status.errors = errors
    status.warnings = warnings
    metrics.routeReloads.inc({ result: 'failure' })
    metrics.lastReloadSuccessful.set(0)
    for (const problem of errors) logger.error('route file problem', { file: options.file, path: problem.path, problem: problem.message })
    logger.error('route reload failed: still serving the previous table', { file: options.file, reason, errors: errors.length, routes: status.routes })
    return { ...status }
  }

  function succeed (table: RouteTable, warnings: RouteProblem[], hash: string | undefined, reason: string): ReloadStatus {
    const nextEntries: RouteEntry[] = []
    for (const [i, route] of table.routes.entries()) {
      let profile = route.rateProfile ?? 'default'
      if (!options.hasProfile(profile)) {
        warnings.push({ path: `$.routes[${i}].rate_profile`, message: `unknown rate profile "${profile}": using "default"` })
        profile = 'default'
      }
      nextEntries.push({ domain: route.domain, route, profile })
    }
    current = table
    entries = nextEntries
    lastHash = hash
    swap()
    options.onTable?.(table)
    const now = new Date()
    Object.assign(status, { result: 'success', at: now.toISOString(), lastSuccessAt: now.toISOString(), routes: table.routes.length, format: table.format, sha256: hash, errors: [], warnings })
    metrics.routeReloads.inc({ result: 'success' })
    metrics.lastReloadSuccessful.set(1)
    metrics.lastReloadSuccessTimestamp.set(now.getTime() / 1000)
    for (const w of warnings) logger.warn('route file warning', { file: options.file, path: w.path, problem: w.message })
    logger.info('routes loaded', { file: options.file, reason, routes: table.routes.length, format: table.format })
    return { ...status }
  }

  async function load (reason: string): Promise<ReloadStatus> {
    let text: string
    try {
      text = await readFile(options.file, 'utf8')
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code === 'ENOENT' && !loadedOnce) {
        loadedOnce = true
        logger.warn('route file missing: serving an empty table', { file: options.file })
        return succeed(EMPTY, [], undefined, reason)
      }
      return fail([{ path: '$', message: `cannot read the file: ${(err as Error).message}` }], [], reason)
    }
    loadedOnce = true
    const hash = createHash('sha256').update(text).digest('hex')
    if (hash === lastHash && status.result !== 'never') {
      logger.info('route file unchanged', { file: options.file, reason })
      metrics.routeReloads.inc({ result: 'success' })
      metrics.lastReloadSuccessful.set(1)
      status.result = 'success'
      status.at = new Date().toISOString()
      status.errors = []
      return { ...status }
    }
    const parsed = parseRouteFileText(text)
    if (!parsed.ok) return fail(parsed.errors, parsed.warnings, reason)
    return succeed(parsed.table, parsed.warnings, hash, reason)
  }

  function reload (reason: string): Promise<ReloadStatus> {
    if (running === undefined) {
      running = load(reason).catch((err: unknown) => fail([{ path: '$', message: (err as Error).message }], [], reason)).finally(() => { running = undefined })
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
    rebuild: swap,
    table: () => current,
    status: () => ({ ...status })
  }
}
