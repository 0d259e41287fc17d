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
  registry: Registry
  /** True once listeners are up and a route table (possibly empty) is loaded. */
  healthy: () => boolean
  status: () => unknown
  /** What the HTML status page shows, read on each request. */
  page: () => StatusPageInput
  /** Writes a diagnostic dump; resolves to its path. */
  dump: () => Promise<string>
}

/** Builds the admin hono app (routes take their dependencies; no globals). */
export function createAdminApp (deps: AdminDeps): Hono {
  const app = new Hono()
  app.get('/metrics', async (c) => {
    const body = await deps.registry.metrics()
    return c.body(body, 200, { 'content-type': deps.registry.contentType })
  })
  app.get('/healthz', (c) => (deps.healthy() ? c.text('ok\n') : c.text('starting\n', 503)))
  app.get('/status', (c) => c.json(deps.status() as object))
  app.get('/', (c) => c.body(renderStatusPage(deps.page(), parseStatusPageQuery(new URL(c.req.url).searchParams)), 200, { ...STATUS_PAGE_HEADERS }))
  const dump = async (c: { json: (v: object, s?: 200 | 500) => Response }): Promise<Response> => {
    try {
      return c.json({ file: await deps.dump() })
    } catch (err) {
      return c.json({ error: (err as Error).message }, 500)
    }
  }
  app.get('/debug/dump', dump)
  app.post('/debug/dump', dump)
  app.notFound((c) => c.json({ error: 'not found', endpoints: ['/', '/metrics', '/healthz', '/status', '/debug/dump'] }, 404))
  return app
}

/** A plain HTTP server for the admin app. */
export function createAdminServer (app: Hono): http.Server {
  return http.createServer({ headersTimeout: 10_000, requestTimeout: 30_000 }, getRequestListener(app.fetch))
}
