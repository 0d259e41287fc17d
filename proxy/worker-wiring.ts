/**
 * @module proxy/worker-wiring
 * The glue of SPEC §12 that main.ts uses: a takeover's inherited sockets, the
 * socket under a server, a primary's summed /metrics, and a worker's answers to
 * its primary.
 */
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue } from 'prom-client'
import type { ListenAddress } from './config-schema.ts'
import type { ListenHandle } from './listen-handle.ts'
import type { ProxyMetrics } from './metrics.ts'
import type { TakenOver } from './takeover.ts'
import type { IpcPeer } from './worker-ipc.ts'
import type { WorkerPool } from './worker-pool.ts'

/**
 * The socket a takeover inherited for `name`, when it is where the config says
 * to listen (a port 0 takes whatever port it has); undefined: bind anew.
 */
export function inheritedHandle (takeover: TakenOver | undefined, name: string, address: ListenAddress | undefined): ListenHandle | undefined {
  const handle = takeover?.handles.get(name)
  if (handle === undefined || address === undefined) return undefined
  const out: { address?: string, port?: number } = {}
  handle.getsockname(out)
  const samePort = address.port === 0 || address.port === out.port
  const sameHost = address.host === out.address || (address.anyHost === true && (out.address === '::' || out.address === '0.0.0.0'))
  return samePort && sameHost ? handle : undefined
}

/** The listening socket under a server (what a takeover hands over). */
export function serverHandle (holder: { server?: { _handle?: unknown } | unknown }): ListenHandle | undefined {
  const h = (holder.server as { _handle?: ListenHandle | null } | undefined)?._handle
  return h === null ? undefined : h
}

/** `/metrics` of a primary: its own series and its workers', summed (SPEC §12). */
export function summedRegistry (metrics: ProxyMetrics, pool: WorkerPool): Pick<ProxyMetrics["registry"], 'metrics' | 'contentType'> {
  return {
    contentType: metrics.registry.contentType,
    async metrics () {
      const parts: Array<Array<MetricObjectWithValues<MetricValue<string>>>> = [await metrics.registry.getMetricsAsJSON()]
      for (const w of await pool.gather<Array<MetricObjectWithValues<MetricValue<string>>>>('metrics', undefined, 5000)) parts.push(w.value)
      return await AggregatorRegistry.aggregate(parts).metrics()
    }
  }
}

/** A worker's answers to its primary. */
export function answerPrimary (primary: IpcPeer, parts: {
  reload: () => Promise<unknown>
  shutdown: (reason: string) => void
  reopenLog: () => void
  stats: () => Promise<unknown>
  metrics: () => Promise<unknown>
  dump: () => unknown
}): void {
  primary.handle('reload', async () => { await parts.reload() })
  primary.handle('shutdown', (reason) => { parts.shutdown(typeof reason === 'string' ? reason : 'primary') })
  primary.handle('reopen-log', () => { parts.reopenLog() })
  primary.handle('stats', parts.stats)
  primary.handle('metrics', parts.metrics)
  primary.handle('dump', parts.dump)
}
