/**
 * @module daemon-adapter/api
 * The daemon's HTTP API (hono). Every route but `/healthz` needs
 * `Authorization: Bearer <key>`. Errors are JSON: `{ "error": { "code", "message", ... } }`.
 *
 * | method | path                       | body                          |
 * | ------ | -------------------------- | ----------------------------- |
 * | GET    | /healthz                   |                               |
 * | GET    | /v1/vms                    |                               |
 * | POST   | /v1/vms                    | VM definition: TOML or JSON   |
 * | GET    | /v1/vms/:name              |                               |
 * | POST   | /v1/vms/:name/rebuild      | optional new definition       |
 * | POST   | /v1/vms/:name/lock, unlock |                               |
 * | DELETE | /v1/vms/:name              |                               |
 */
import { Hono } from 'hono'
import type { Context } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import { AdapterError } from './errors.ts'
import type { KeyChecker } from './api-keys.ts'
import { FILE_HEADER } from './protocol.ts'
import type { Logger } from './log.ts'
import type { ChangeResult, VmManager } from './manager.ts'
import type { Revision, Vm } from './registry.ts'
import { definitionToJson, parseVmDefinition, parseVmDefinitionText } from './vm-definition.ts'
import type { VmDefinition, VmParseContext } from './vm-definition.ts'

function revisionJson (r: Revision): Record<string, unknown> {
  const json: Record<string, unknown> = { number: r.number, state: r.state, address: r.address, handle: r.handle, created_at: r.createdAt }
  if (r.ip !== undefined) json.ip = r.ip
  if (r.mac !== undefined) json.mac = r.mac
  return json
}

/** The JSON form of a VM the API returns (and `vm list --json` prints). */
export function vmJson (vm: Vm): Record<string, unknown> {
  const active = vm.revisions.find((r) => r.state === 'active')
  const shown = active ?? vm.revisions[0]
  return {
    name: vm.name,
    state: shown?.state ?? 'gone',
    revision: active?.number ?? null,
    address: active?.address ?? null,
    locked: vm.locked,
    created_at: vm.createdAt,
    domains: shown === undefined ? [] : [...shown.definition.domains.map((d) => d.domain), ...shown.definition.redirects.map((r) => r.from)],
    definition: shown === undefined ? null : definitionToJson(shown.definition),
    revisions: vm.revisions.map(revisionJson)
  }
}

function changeJson (result: ChangeResult): Record<string, unknown> {
  return {
    vm: result.vm === undefined ? null : vmJson(result.vm),
    routes: { count: result.publish.routes, written: result.publish.written, reload: result.publish.signal },
    warnings: result.warnings
  }
}

function errorBody (err: AdapterError): Record<string, unknown> {
  return { error: { code: err.code, message: err.message, ...err.details } }
}

/** Reads a VM definition from the request body: JSON when so declared, TOML otherwise. */
async function readDefinition (c: Context, context: VmParseContext): Promise<VmDefinition | undefined> {
  const file = c.req.header(FILE_HEADER) ?? '(request body)'
  const text = await c.req.text()
  if (text.trim() === '') return undefined
  if ((c.req.header('content-type') ?? '').includes('json')) {
    let doc: unknown
    try {
      doc = JSON.parse(text)
    } catch (err) {
      throw new AdapterError('VM_INVALID', `${file}: not valid JSON: ${(err as Error).message}`)
    }
    return parseVmDefinition(doc, file, context)
  }
  return parseVmDefinitionText(text, file, context)
}

export interface ApiOptions {
  readonly manager: VmManager
  readonly keys: KeyChecker
  readonly parseContext: VmParseContext
  readonly log: Logger
}

/** Builds the hono app. */
export function createApi (options: ApiOptions): Hono {
  const { manager, keys, parseContext, log } = options
  const app = new Hono()

  app.onError((err, c) => {
    if (err instanceof AdapterError) {
      if (err.status >= 500) log.error('request failed', { method: c.req.method, path: c.req.path, err })
      return c.json(errorBody(err), err.status as 400)
    }
    log.error('request failed unexpectedly', { method: c.req.method, path: c.req.path, err })
    return c.json({ error: { code: 'INTERNAL', message: (err as Error).message } }, 500)
  })
  app.notFound((c) => c.json({ error: { code: 'USAGE', message: `no endpoint ${c.req.method} ${c.req.path}` } }, 404))

  app.get('/healthz', (c) => c.json({ status: 'ok' }))

  app.use('/v1/*', async function authenticate (c, next) {
    const header = c.req.header('authorization') ?? ''
    const match = /^Bearer\s+(\S+)$/i.exec(header)
    if (match === null || !keys.verify(match[1])) {
      c.header('www-authenticate', 'Bearer')
      throw new AdapterError('UNAUTHORIZED', match === null ? 'missing API key (Authorization: Bearer <key>)' : 'invalid API key')
    }
    await next()
  })
  app.use('/v1/*', bodyLimit({
    maxSize: 1024 * 1024,
    onError: () => { throw new AdapterError('VM_INVALID', 'the request body is over 1 MiB') }
  }))

  app.get('/v1/vms', (c) => c.json({ vms: manager.list().map(vmJson) }))

  app.post('/v1/vms', async (c) => {
    const definition = await readDefinition(c, parseContext)
    if (definition === undefined) throw new AdapterError('VM_INVALID', 'the request body holds no VM definition')
    return c.json(changeJson(await manager.create(definition)), 201)
  })

  app.get('/v1/vms/:name', (c) => c.json({ vm: vmJson(manager.get(c.req.param('name'))) }))

  app.post('/v1/vms/:name/rebuild', async (c) => {
    const definition = await readDefinition(c, parseContext)
    return c.json(changeJson(await manager.rebuild(c.req.param('name'), definition)))
  })

  app.post('/v1/vms/:name/lock', (c) => c.json({ vm: vmJson(manager.setLocked(c.req.param('name'), true)) }))
  app.post('/v1/vms/:name/unlock', (c) => c.json({ vm: vmJson(manager.setLocked(c.req.param('name'), false)) }))

  app.delete('/v1/vms/:name', async (c) => c.json(changeJson(await manager.remove(c.req.param('name')))))

  return app
}
