/**
 * @module daemon-adapter/errors
 * Typed errors of the VM-manager core. Callers check `code`, never the message; the
 * API maps `status` to the HTTP answer and the CLI maps `exitCode` to its exit status.
 */

export type AdapterErrorCode =
  | 'USAGE'
  | 'CONFIG_INVALID'
  | 'CONFIG_UNREADABLE'
  | 'VM_INVALID'
  | 'VM_NOT_FOUND'
  | 'VM_EXISTS'
  | 'VM_LOCKED'
  | 'VM_BUSY'
  | 'VM_NOT_UP'
  | 'DOMAIN_CONFLICT'
  | 'CHAIN_CONFLICT'
  | 'CHAIN_UNREACHABLE'
  | 'CHAIN_REJECTED'
  | 'DRIVER_FAILED'
  | 'DRIVER_TIMEOUT'
  | 'ROUTES_INVALID'
  | 'ROUTES_WRITE_FAILED'
  | 'ROUTES_FOREIGN'
  | 'UNAUTHORIZED'
  | 'API_UNREACHABLE'
  | 'API_ERROR'
  | 'INTERNAL'

/** HTTP status per code: what the API answers when such an error escapes. */
const STATUS: Record<AdapterErrorCode, number> = {
  USAGE: 400,
  CONFIG_INVALID: 400,
  CONFIG_UNREADABLE: 500,
  VM_INVALID: 400,
  VM_NOT_FOUND: 404,
  VM_EXISTS: 409,
  VM_LOCKED: 409,
  VM_BUSY: 409,
  VM_NOT_UP: 504,
  DOMAIN_CONFLICT: 409,
  CHAIN_CONFLICT: 409,
  CHAIN_UNREACHABLE: 503,
  CHAIN_REJECTED: 502,
  DRIVER_FAILED: 502,
  DRIVER_TIMEOUT: 504,
  ROUTES_INVALID: 500,
  ROUTES_WRITE_FAILED: 500,
  /** The route file holds content the daemon did not write; it is left alone. */
  ROUTES_FOREIGN: 409,
  UNAUTHORIZED: 401,
  API_UNREACHABLE: 503,
  API_ERROR: 500,
  INTERNAL: 500
}

/**
 * Codes that mean "the input was wrong" (CLI exit 2), as opposed to a runtime failure
 * (exit 1). A foreign route file is the operator's to resolve, like a bad config.
 */
const INPUT_CODES = new Set<AdapterErrorCode>(['USAGE', 'CONFIG_INVALID', 'CONFIG_UNREADABLE', 'VM_INVALID', 'ROUTES_FOREIGN'])

/** Base class: a stable `code`, an HTTP `status`, optional `details` for the JSON answer, and a `cause`. */
export class AdapterError extends Error {
  readonly code: AdapterErrorCode
  readonly status: number
  readonly details: Record<string, unknown> | undefined
  constructor (code: AdapterErrorCode, message: string, options: { status?: number, cause?: unknown, details?: Record<string, unknown> } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'AdapterError'
    this.code = code
    this.status = options.status ?? STATUS[code]
    this.details = options.details
  }

  /** The CLI exit status for this error: 2 for invalid input, 1 otherwise. */
  get exitCode (): number {
    return INPUT_CODES.has(this.code) ? 2 : 1
  }
}

/** True when `code` is one this package defines (used when decoding API answers). */
export function isAdapterErrorCode (code: unknown): code is AdapterErrorCode {
  return typeof code === 'string' && Object.hasOwn(STATUS, code)
}

/** One problem found in a file, located by its key (`libvirt.uri`, `redirects[0][2]`). */
export interface Problem {
  key: string
  message: string
}

/**
 * A configuration or VM file failed validation. The message names the file, and for
 * each problem the key and the offending value.
 */
export class FileInvalidError extends AdapterError {
  readonly file: string
  readonly problems: readonly Problem[]
  constructor (code: 'CONFIG_INVALID' | 'VM_INVALID', file: string, problems: readonly Problem[]) {
    super(code, `${file}: ${problems.map((p) => `${p.key}: ${p.message}`).join('; ')}`, { details: { file, problems } })
    this.name = 'FileInvalidError'
    this.file = file
    this.problems = problems
  }
}
