/**
 * @module proxy/dump
 * The diagnostic dump (SIGUSR2 or GET /debug/dump): in-flight requests with their
 * age, connection counts, chain sessions and rate-limit state, written as JSON into
 * data_dir with mode 0600 (mulch-proxy wrote world-readable files to /tmp).
 */
import { join } from 'node:path'
import { describeError, writeFileAtomic } from '../certs/index.ts'
import { ProxyError } from './errors.ts'
import type { ActiveRequest } from './handler.ts'

export interface DumpSources {
  active: ReadonlySet<ActiveRequest>
  connections: () => Record<string, number>
  chain?: () => unknown
  rateLimits?: () => unknown
  routes: () => unknown
}

/** Builds the dump's content. */
export function buildDump (sources: DumpSources): Record<string, unknown> {
  const now = performance.now()
  const inFlight = [...sources.active].map((a) => ({
    age_ms: Math.round(now - a.start),
    method: a.req.method,
    host: a.req.headers.host ?? a.req.headers[':authority'],
    path: a.req.url,
    domain: a.domain,
    client: a.client,
    http_version: a.req.httpVersion
  })).sort((x, y) => y.age_ms - x.age_ms)
  return {
    time: new Date().toISOString(),
    pid: process.pid,
    uptime_s: Math.round(process.uptime()),
    memory: process.memoryUsage(),
    in_flight: inFlight,
    connections: sources.connections(),
    routes: sources.routes(),
    chain: sources.chain?.() ?? null,
    rate_limits: sources.rateLimits?.() ?? null
  }
}

/**
 * One dump for the whole proxy (SPEC §12): the primary's, with every worker's
 * in-flight requests in `in_flight` (each naming its worker, oldest first) and
 * each worker's own figures under `workers`.
 */
function mergeWorkerDumps (primary: Record<string, unknown>, workers: unknown[]): Record<string, unknown> {
  const inFlight: Array<Record<string, unknown>> = [...(primary.in_flight as Array<Record<string, unknown>>)]
  const perWorker = workers.map((w, slot) => {
    const { in_flight: requests, routes: _routes, rate_limits: _limits, chain: _chain, ...rest } = w as Record<string, unknown>
    for (const r of requests as Array<Record<string, unknown>>) inFlight.push({ ...r, worker: rest.worker ?? slot, pid: rest.pid })
    return { worker: slot, in_flight: (requests as unknown[]).length, ...rest }
  })
  inFlight.sort((x, y) => (y.age_ms as number) - (x.age_ms as number))
  return { ...primary, in_flight: inFlight, workers: perWorker }
}

/**
 * Writes a dump file atomically with mode 0600; returns its path. A failed write (a full disk)
 * rejects and leaves nothing behind, not even a temporary file.
 */
export async function writeDump (dataDir: string, sources: DumpSources, workers?: unknown[]): Promise<string> {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-')
  const file = join(dataDir, `dump-${stamp}-${process.pid}.json`)
  try {
    await writeFileAtomic(file, JSON.stringify(workers === undefined ? buildDump(sources) : mergeWorkerDumps(buildDump(sources), workers), null, 2) + '\n', 0o600)
  } catch (err) {
    throw new ProxyError('DUMP_FAILED', `cannot write the diagnostic dump to ${file}: ${describeError(err)}`, { cause: err })
  }
  return file
}
