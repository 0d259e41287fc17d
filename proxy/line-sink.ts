/**
 * @module proxy/line-sink
 * Batches log lines and writes them once per event-loop turn: stdout to a pipe or
 * file is a synchronous write on Linux, and one syscall per request would cost
 * more than the request itself. An output that buffers instead (a stream to a
 * slow consumer) is bounded: past MAX_BUFFERED_BYTES lines are dropped and
 * counted, and the count is written once the output catches up.
 */
/** Where a sink writes: process.stdout, or a log file (proxy/log-file.ts). */
export interface LineOutput {
  /** Bytes accepted but not yet written (0 for a synchronous output). */
  readonly writableLength: number
  write (chunk: string): unknown
}

export interface LineSink {
  write (line: string): void
  /** Writes what is pending now (at exit). */
  flush (): void
}

/** Bytes the output may hold unwritten before lines are dropped. */
export const MAX_BUFFERED_BYTES = 16 * 1024 * 1024

/** A sink over `out`; lines are flushed at the end of the current turn or at 64 KiB. */
export function createLineSink (out: LineOutput): LineSink {
  let pending = ''
  let pendingLines = 0
  let dropped = 0
  let scheduled = false
  const flush = (): void => {
    scheduled = false
    if (pending === '') return
    const chunk = pending
    const lines = pendingLines
    pending = ''
    pendingLines = 0
    if (out.writableLength > MAX_BUFFERED_BYTES) {
      dropped += lines
      return
    }
    if (dropped > 0) {
      out.write(JSON.stringify({ time: new Date().toISOString(), level: 'warn', msg: 'log lines dropped: the log output was not keeping up', dropped }) + '\n')
      dropped = 0
    }
    out.write(chunk)
  }
  return {
    write (line: string): void {
      pending += line + '\n'
      pendingLines++
      if (pending.length > 65536) flush()
      else if (!scheduled) {
        scheduled = true
        setImmediate(flush)
      }
    },
    flush
  }
}
