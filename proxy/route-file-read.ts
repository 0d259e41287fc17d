/**
 * @module proxy/route-file-read
 * Reads a route file so that no file can hang or flood the reader: only regular
 * files are read (a FIFO, device, socket or directory is refused with its kind
 * named), the open never blocks, and at most ROUTE_FILE_MAX_BYTES are read.
 * Shared by the reloader and `vmfront routes check`.
 */
import { constants } from 'node:fs'
import { open, stat } from 'node:fs/promises'
import type { Stats } from 'node:fs'
import { ProxyError } from './errors.ts'

/**
 * The largest route file read: 32 MiB. 100,000 routes take about 9 MB in the v1
 * format and 21-27 MB in Mulch's. The bound is on memory, not only bytes:
 * JSON.parse of 32 MiB of tiny objects (`[{},{},...]`) already needs about
 * 1.1 GB (2.2 GB at 64 MiB, measured), and an endless file (`/dev/zero` behind a
 * regular-looking name, a file still growing) must stop somewhere.
 */
export const ROUTE_FILE_MAX_BYTES = 32 * 1024 * 1024

/** Why a route file could not be read; `missing` when it does not exist. */
export class RouteFileReadError extends ProxyError {
  readonly missing: boolean
  constructor (message: string, options: { missing?: boolean, cause?: unknown } = {}) {
    super('ROUTES_UNREADABLE', message, { cause: options.cause })
    this.name = 'RouteFileReadError'
    this.missing = options.missing ?? false
  }
}

function kindOf (st: Stats): string | undefined {
  if (st.isFile()) return undefined
  if (st.isFIFO()) return 'a named pipe (FIFO)'
  if (st.isDirectory()) return 'a directory'
  if (st.isCharacterDevice()) return 'a character device'
  if (st.isBlockDevice()) return 'a block device'
  if (st.isSocket()) return 'a socket'
  return 'not a regular file'
}

function notRegular (kind: string): RouteFileReadError {
  return new RouteFileReadError(`is ${kind}, not a regular file: refused`)
}

function sizeProblem (bytes: number, maxBytes: number, atLeast: boolean): RouteFileReadError {
  const limit = maxBytes % (1024 * 1024) === 0 ? `${maxBytes / (1024 * 1024)} MiB` : `${maxBytes} bytes`
  return new RouteFileReadError(`is ${atLeast ? 'more than ' : ''}${atLeast ? maxBytes : bytes} bytes, over the ${limit} a route file may hold`)
}

function readProblem (err: unknown): RouteFileReadError {
  const e = err as NodeJS.ErrnoException
  if (e.code === 'ENOENT') return new RouteFileReadError('does not exist', { missing: true, cause: err })
  // "EACCES: permission denied, open '/x'": the caller names the file already
  const reason = String(e.message).replace(/, \w+( '.*')?$/s, '')
  return new RouteFileReadError(`cannot be read: ${reason}`, { cause: err })
}

/**
 * Reads `file` as UTF-8 text. The kind is checked by `stat` before opening, and
 * again by `fstat` on the descriptor, which is opened with O_NONBLOCK: a file
 * swapped for a FIFO in between cannot block the open (which would hold a
 * thread-pool thread, and with it the process's exit, forever).
 * @throws RouteFileReadError naming the problem (the caller names the file)
 */
export async function readRouteFile (file: string, maxBytes = ROUTE_FILE_MAX_BYTES): Promise<string> {
  let before: Stats
  try {
    before = await stat(file)
  } catch (err) {
    throw readProblem(err)
  }
  const kind = kindOf(before)
  if (kind !== undefined) throw notRegular(kind)
  if (before.size > maxBytes) throw sizeProblem(before.size, maxBytes, false)

  let handle
  try {
    handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY)
  } catch (err) {
    throw readProblem(err)
  }
  try {
    const st = await handle.stat()
    const swapped = kindOf(st)
    if (swapped !== undefined) throw notRegular(swapped)
    // The size may change under us (or be 0 for a pseudo-file): read until EOF,
    // but never more than maxBytes + 1, which is enough to know it is too big.
    let buffer = Buffer.allocUnsafe(Math.min(Math.max(st.size + 1, 64 * 1024), maxBytes + 1))
    let length = 0
    for (;;) {
      if (length === buffer.length) {
        if (buffer.length > maxBytes) throw sizeProblem(length, maxBytes, true)
        const bigger = Buffer.allocUnsafe(Math.min(buffer.length * 2, maxBytes + 1))
        buffer.copy(bigger, 0, 0, length)
        buffer = bigger
      }
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, null)
      if (bytesRead === 0) break
      length += bytesRead
    }
    return buffer.toString('utf8', 0, length)
  } catch (err) {
    if (err instanceof RouteFileReadError) throw err
    throw readProblem(err)
  } finally {
    await handle.close().catch(() => {})
  }
}
