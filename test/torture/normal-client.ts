/**
 * @module test/torture/normal-client
 * Drives normal-client-process.ts during an attack and sums up what it saw: how
 * many requests, how many failed (error, timeout, or a status other than 200 and the
 * attack's accepted ones), and latency percentiles. A failed request counts at the
 * time it took to fail, so a stall shows in p99 and max, not only in the failures.
 */
import { join } from 'node:path'
import { forkScript } from './ipc.ts'

export interface NormalClientOptions {
  port: number
  host: string
  path?: string
  intervalMs?: number
  timeoutMs: number
  /** Statuses besides 200 that are not failures. */
  accepts?: number[]
}

export interface NormalStats {
  requests: number
  failures: number
  /** Failures by reason ("timeout", "ECONNRESET", "status 502"). */
  reasons: Record<string, number>
  p50: number
  p99: number
  max: number
}

interface Result { ms: number, status?: number, error?: string }

/** Nearest-rank percentile of sorted values; 0 for none. */
export function percentile (sorted: number[], p: number): number {
  if (sorted.length === 0) return 0
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p / 100 * sorted.length) - 1))]
}

export function summarizeResults (results: Result[], accepts: number[]): NormalStats {
  const reasons: Record<string, number> = {}
  let failures = 0
  for (const r of results) {
    const reason = r.error ?? (r.status === 200 || accepts.includes(r.status ?? 0) ? undefined : `status ${r.status ?? '?'}`)
    if (reason !== undefined) {
      failures++
      reasons[reason] = (reasons[reason] ?? 0) + 1
    }
  }
  const sorted = results.map((r) => r.ms).sort((a, b) => a - b)
  return { requests: results.length, failures, reasons, p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted.at(-1) ?? 0 }
}

export interface RunningNormalClient {
  /** Stops sending, waits for the requests in flight (bounded by their timeout), sums up. */
  stop (): Promise<NormalStats>
}

export async function startNormalClient (options: NormalClientOptions): Promise<RunningNormalClient> {
  const forked = forkScript(join(import.meta.dirname, 'normal-client-process.ts'), 'the normal client')
  await forked.next('ready')
  forked.child.send({ type: 'start', port: options.port, host: options.host, path: options.path ?? '/', intervalMs: options.intervalMs ?? 50, timeoutMs: options.timeoutMs })
  return {
    async stop () {
      try {
        const { results } = await forked.ask<{ type: string, results: Result[] }>({ type: 'stop' }, 'results', options.timeoutMs + 10_000)
        return summarizeResults(results, options.accepts ?? [])
      } finally {
        await forked.kill()
      }
    }
  }
}
