/**
 * @module daemon-adapter/client
 * A small typed client of the daemon API, used by `vmfront vm`. API errors come back
 * as AdapterError with the daemon's code, so the CLI can pick its exit status.
 */
import { AdapterError, isAdapterErrorCode } from './errors.ts'
import { FILE_HEADER } from './protocol.ts'

/** A VM as the API returns it (see api.ts `vmJson`). */
export interface VmInfo {
  name: string
  state: string
  revision: number | null
  address: string | null
  locked: boolean
  created_at: string
  domains: string[]
  definition: Record<string, unknown> | null
  revisions: { number: number, state: string, address: string, handle: string, created_at: string, ip?: string, mac?: string }[]
}

/** The answer to a change (create, rebuild, delete). */
export interface ChangeInfo {
  vm: VmInfo | null
  routes: { count: number, written: boolean, reload: { status: string, pid?: number, message?: string } }
  warnings: string[]
}

export interface ApiClient {
  list (): Promise<VmInfo[]>
  info (name: string): Promise<VmInfo>
  /** `text` is the VM file (TOML); `file` names it in error messages. */
  create (text: string, file: string): Promise<ChangeInfo>
  rebuild (name: string, definition?: { text: string, file: string }): Promise<ChangeInfo>
  lock (name: string): Promise<VmInfo>
  unlock (name: string): Promise<VmInfo>
  remove (name: string): Promise<ChangeInfo>
}

/** Creates a client for the daemon at `url` (e.g. http://127.0.0.1:8686) using `key`. */
export function createApiClient (options: { url: string, key: string, fetch?: typeof fetch }): ApiClient {
  const base = options.url.replace(/\/+$/, '')
  const doFetch = options.fetch ?? fetch

  async function call<T> (method: string, path: string, body?: { text: string, file: string }): Promise<T> {
    const headers: Record<string, string> = { authorization: `Bearer ${options.key}` }
    if (body !== undefined) {
      headers['content-type'] = 'application/toml'
      headers[FILE_HEADER] = body.file
    }
    let response: Response
    try {
      response = await doFetch(`${base}${path}`, { method, headers, body: body?.text })
    } catch (err) {
      const reason = ((err as Error).cause as Error | undefined)?.message ?? (err as Error).message
      throw new AdapterError('API_UNREACHABLE', `cannot reach the daemon at ${base}: ${reason}`, { cause: err })
    }
    const text = await response.text()
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch {
      throw new AdapterError('API_ERROR', `the daemon at ${base} answered ${response.status} with non-JSON: ${text.slice(0, 200)}`)
    }
    if (!response.ok) {
      const error = (json as { error?: { code?: unknown, message?: unknown } }).error ?? {}
      const code = isAdapterErrorCode(error.code) ? error.code : 'API_ERROR'
      const { code: _c, message: _m, ...details } = error as Record<string, unknown>
      throw new AdapterError(code, typeof error.message === 'string' ? error.message : `the daemon answered ${response.status}`, { status: response.status, details })
    }
    return json as T
  }

  const path = (name: string): string => `/v1/vms/${encodeURIComponent(name)}`
  return {
    list: async () => (await call<{ vms: VmInfo[] }>('GET', '/v1/vms')).vms,
    info: async (name) => (await call<{ vm: VmInfo }>('GET', path(name))).vm,
    create: (text, file) => call('POST', '/v1/vms', { text, file }),
    rebuild: (name, definition) => call('POST', `${path(name)}/rebuild`, definition),
    lock: async (name) => (await call<{ vm: VmInfo }>('POST', `${path(name)}/lock`)).vm,
    unlock: async (name) => (await call<{ vm: VmInfo }>('POST', `${path(name)}/unlock`)).vm,
    remove: (name) => call('DELETE', path(name))
  }
}
