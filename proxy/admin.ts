/**
 * @module proxy/admin
 * The admin listener (hono): `/` (the HTML status page), `/metrics` (Prometheus),
 * `/healthz`, `/status` (JSON), and `/debug/dump` (writes the diagnostic dump).
 * Bound to loopback by default.
 */
import http from 'node:http'
import { Hono } from 'hono'
import { getRequestListener } from '@hono/node-server'
import type { Registry } from 'prom-client'
import { parseStatusPageQuery, renderStatusPage, STATUS_PAGE_HEADERS, type StatusPageInput } from './status-page.ts'

export interface AdminDeps {
  /** The exposition: one process's registry, or the sum over workers (SPEC §12). */
  registry: Pick<Registry, 'metrics' | 'contentType'>
  /** True once listeners are up and a route table (possibly empty) is loaded. */
  healthy: () => boolean
  status: () => unknown | Promise<unknown>
  /** What the HTML status page shows, read on each request. */
  page: () => StatusPageInput | Promise<StatusPageInput>
  /** Writes a diagnostic dump; resolves to its path. */
  dump: () => Promise<string>
  /** Chain parent: removes a child by name or URL (undefined when not a parent). */
  chainForget?: () => ((nameOrUrl: string) => Promise<unknown[]>) | undefined
}

/** Builds the admin hono app (routes take their dependencies; no globals). */
export function createAdminApp (deps: AdminDeps): Hono {
  const app = new Hono()
  app.get('/metrics', async (c) => {
    const body = await deps.registry.metrics()
    return c.body(body, 200, { 'content-type': deps.registry.contentType })
  })
  app.get('/healthz', (c) => (deps.healthy() ? c.text('ok\n') : c.text('starting\n', 503)))
  app.get('/status', async (c) => c.json(await deps.status() as object))
  app.get('/', async (c) => c.body(renderStatusPage(await deps.page(), parseStatusPageQuery(new URL(c.req.url).searchParams)), 200, { ...STATUS_PAGE_HEADERS }))
  const dump = async (c: { json: (v: object, s?: 200 | 500) => Response }): Promise<Response> => {
    try {
      return c.json({ file: await deps.dump() })
    } catch (err) {
      return c.json({ error: (err as Error).message }, 500)
    }
  }
  app.get('/debug/dump', dump)
  app.post('/debug/dump', dump)
  // `POST /chain/forget {"child": NAME_OR_URL}`: a Mulch child has no lease, so
  // an operator removes it here (`vmfront chain forget` calls this).
  app.post('/chain/forget', async (c) => {
    const forget = deps.chainForget?.()
    if (forget === undefined) return c.json({ error: 'this proxy is not a chain parent (chain.mode = "parent")' }, 409)
    let child: unknown
    try {
      child = ((await c.req.json()) as { child?: unknown }).child
    } catch {
      child = undefined
    }
    if (typeof child !== 'string' || child === '') return c.json({ error: 'body: expected {"child": "NAME_OR_URL"}' }, 400)
    const forgotten = await forget(child)
    if (forgotten.length === 0) return c.json({ error: `no chain child named or at "${child}" (see /status chain.children)` }, 404)
    return c.json({ forgotten })
  })
  app.notFound((c) => c.json({ error: 'not found', endpoints: ['/', '/metrics', '/healthz', '/status', '/debug/dump', 'POST /chain/forget'] }, 404))
  return app
}

/** A plain HTTP server for the admin app. */
export function createAdminServer (app: Hono): http.Server {
  return http.createServer({ headersTimeout: 10_000, requestTimeout: 30_000 }, getRequestListener(app.fetch))
}
