/**
 * A test hook, loaded with `node --import`: once a FIFO named `FILE.hang` exists,
 * opening FILE through node:fs/promises opens that FIFO instead, blocking, with
 * no writer. A thread-pool thread then hangs in the kernel as on a hung network
 * file system, which no open flag can prevent: the case the proxy's exit must
 * survive. It says so on stderr when it hangs.
 */
import { constants, existsSync, writeSync } from 'node:fs'
import fsp from 'node:fs/promises'
import { syncBuiltinESMExports } from 'node:module'

const realOpen = fsp.open
;(fsp as { open: typeof fsp.open }).open = ((path: Parameters<typeof fsp.open>[0], flags?: string | number, mode?: number) => {
  const fifo = `${String(path)}.hang`
  if (existsSync(fifo)) {
    writeSync(2, `hang-open-hook: the open of ${String(path)} now hangs\n`)
    return realOpen(fifo, constants.O_RDONLY)
  }
  return realOpen(path, flags, mode)
}) as typeof fsp.open
syncBuiltinESMExports()
