/**
 * @module proxy/line-sink
 * Batches log lines and writes them once per event-loop turn: stdout to a pipe or
 * file is a synchronous write on Linux, and one syscall per request would cost
 * more than the request itself.
 */
import type { Writable } from 'node:stream'

export interface LineSink {
  write (line: string): void
  /** Writes what is pending now (at exit). */
  flush (): void
}

/** A sink over `out`; lines are flushed at the end of the current turn or at 64 KiB. */
export function createLineSink (out: Writable): LineSink {
  let pending = ''
  let scheduled = false
  const flush = (): void => {
    scheduled = false
    if (pending === '') return
    const chunk = pending
    pending = ''
    out.write(chunk)
  }
  return {
    write (line: string): void {
      pending += line + '\n'
      if (pending.length > 65536) flush()
      else if (!scheduled) {
        scheduled = true
        setImmediate(flush)
      }
    },
    flush
  }
}
