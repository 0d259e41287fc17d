/**
 * @module proxy/log-file
 * The `log.file` output: lines appended to a file, reopened on SIGUSR1 so that
 * logrotate can rename the file and signal (its `postrotate` convention, as nginx's
 * USR1). Writes are synchronous appends of the line sink's batches (one per event
 * loop turn), which is what stdout redirected to a file costs too. A write that
 * fails (disk full, file system gone) loses its lines, never the proxy: the count
 * is written once writing works again.
 */
import { closeSync, openSync, writeSync, constants } from 'node:fs'
import type { LineOutput } from './line-sink.ts'
import { ProxyError } from './errors.ts'

const FLAGS = constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT
/** Group-readable, as logrotate's usual `create 0640`. */
const MODE = 0o640

export interface LogFile extends LineOutput {
  readonly path: string
  /** Opens the path again (after a rotation); the old descriptor is closed. Throws ProxyError, keeping the old one. */
  reopen (): void
  close (): void
}

function openLog (path: string): number {
  try {
    return openSync(path, FLAGS, MODE)
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    throw new ProxyError('CONFIG_INVALID', `log.file: cannot open ${path} for appending: ${e.code ?? e.message}`, { cause: err })
  }
}

/**
 * Opens `path` for appending (created 0640 when missing). Throws ProxyError
 * CONFIG_INVALID (exit 2 at start: restarting cannot fix a missing folder).
 */
export function openLogFile (path: string): LogFile {
  let fd = openLog(path)
  let lost = 0
  let lastError = ''
  /** A write stopped inside a line: the next one first ends it, so that line alone is garbled. */
  let midLine = false
  const append = (text: string): void => {
    const buf = Buffer.from(midLine ? '\n' + text : text)
    let off = 0
    try {
      while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off)
      midLine = false
    } catch (err) {
      if (off > 0) midLine = buf[off - 1] !== 0x0a
      throw err
    }
  }
  return {
    path,
    writableLength: 0,
    write (chunk: string): boolean {
      try {
        if (lost > 0) {
          append(JSON.stringify({ time: new Date().toISOString(), level: 'warn', msg: 'log lines lost: the log file could not be written', file: path, lost, reason: lastError }) + '\n')
          lost = 0
        }
        append(chunk)
      } catch (err) {
        let lines = 0
        for (let i = chunk.indexOf('\n'); i !== -1; i = chunk.indexOf('\n', i + 1)) lines++
        lost += lines
        lastError = (err as NodeJS.ErrnoException).code ?? (err as Error).message
      }
      return true
    },
    reopen (): void {
      const next = openLog(path)
      const old = fd
      fd = next
      midLine = false
      closeSync(old)
    },
    close (): void {
      closeSync(fd)
    }
  }
}
