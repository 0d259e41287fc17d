/**
 * @module proxy/errors
 * Typed errors of the proxy. Callers check `code`, never the message.
 */

export type ProxyErrorCode =
  | 'CONFIG_INVALID'
  | 'CONFIG_UNREADABLE'
  | 'ROUTES_INVALID'
  | 'ROUTES_UNREADABLE'
  | 'PROXY_NO_ROUTE'
  | 'PROXY_UPSTREAM_REFUSED'
  | 'PROXY_UPSTREAM_TIMEOUT'
  | 'PROXY_UPSTREAM_RESET'
  | 'PROXY_RATE_LIMITED'
  | 'PROXY_UNAVAILABLE'
  /** The diagnostic dump could not be written (disk full, data_dir unwritable). */
  | 'DUMP_FAILED'
  /** `vmfront proxy --takeover` found no running proxy to take over, or it stopped answering. */
  | 'TAKEOVER_FAILED'
  | 'USAGE'

/**
 * Base class: a stable `code`, an optional HTTP `status`, and a `cause`. Sub-areas
 * (chain/) extend it with their own code union.
 */
export class ProxyError<Code extends string = ProxyErrorCode> extends Error {
  readonly code: Code
  readonly status: number | undefined
  constructor (code: Code, message: string, options: { status?: number, cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'ProxyError'
    this.code = code
    this.status = options.status
  }
}

/** One problem found in a file, located by its key or JSON path. */
export interface Problem {
  /** JSON path (`$.routes[1].domain`) or TOML key (`listen.http`). */
  path: string
  message: string
}

/** A file (config or routes) failed validation; `problems` lists every finding. */
export class FileInvalidError extends ProxyError {
  readonly file: string
  readonly problems: readonly Problem[]
  constructor (code: 'CONFIG_INVALID' | 'ROUTES_INVALID', file: string, problems: readonly Problem[]) {
    super(code, `${file}: ${problems.map((p) => `${p.path}: ${p.message}`).join('; ')}`)
    this.name = 'FileInvalidError'
    this.file = file
    this.problems = problems
  }
}
