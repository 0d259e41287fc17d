// Reading a route file: only regular files, never a blocking open, a size cap (issue 9 point 4).
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { renameSync, writeFileSync } from 'node:fs'
import fsp from 'node:fs/promises'
import { syncBuiltinESMExports } from 'node:module'
import net from 'node:net'
import { join } from 'node:path'
import { tempDir } from '../helpers/proxy-process.ts'
import { readRouteFile, RouteFileReadError, ROUTE_FILE_MAX_BYTES } from '../../proxy/route-file-read.ts'

/** Rejects when `promise` has not settled within `ms`: a blocked read must fail the test, not hang it. */
async function within<T> (promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((resolve, reject) => { timer = setTimeout(() => { reject(new Error(`${what}: still blocked after ${ms} ms`)) }, ms) })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

async function refusal (file: string, maxBytes?: number): Promise<RouteFileReadError> {
  try {
    await within(readRouteFile(file, maxBytes), 3000, file)
  } catch (err) {
    if (err instanceof RouteFileReadError) return err
    throw err
  }
  throw new Error(`${file} was read`)
}

t.test('non-regular files are refused by kind, at once', async (t) => {
  const dir = tempDir(t)
  const fifo = join(dir, 'routes.json')
  execFileSync('mkfifo', [fifo])
  const socketPath = join(dir, 'routes.sock')
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(socketPath, resolve))
  t.teardown(() => { server.close() })
  const cases: Array<[string, string, RegExp]> = [
    ['FIFO with no writer', fifo, /^is a named pipe \(FIFO\), not a regular file: refused$/],
    ['directory', dir, /^is a directory, not a regular file/],
    ['endless character device', '/dev/zero', /^is a character device, not a regular file/],
    ['socket', socketPath, /^is a socket, not a regular file/]
  ]
  for (const [name, file, message] of cases) {
    const err = await refusal(file)
    t.match(err.message, message, name)
    t.equal(err.code, 'ROUTES_UNREADABLE', `${name}: typed`)
    t.equal(err.missing, false)
  }
})

t.test('a FIFO swapped in between stat and open is caught by fstat without blocking the open', async (t) => {
  const dir = tempDir(t)
  const file = join(dir, 'routes.json')
  const fifo = join(dir, 'fifo')
  writeFileSync(file, '{"version":1,"routes":[]}')
  execFileSync('mkfifo', [fifo])
  const realStat = fsp.stat
  // The swap happens exactly after readRouteFile's stat saw a regular file.
  ;(fsp as { stat: typeof fsp.stat }).stat = (async (path: Parameters<typeof fsp.stat>[0]) => {
    const st = await realStat(path)
    renameSync(fifo, file)
    return st
  }) as typeof fsp.stat
  syncBuiltinESMExports()
  t.teardown(() => {
    ;(fsp as { stat: typeof fsp.stat }).stat = realStat
    syncBuiltinESMExports()
  })
  const err = await refusal(file)
  t.match(err.message, /^is a named pipe \(FIFO\)/, 'refused after the open, which did not block')
})

t.test('the size cap: a bigger file is refused, one at the cap is read, a pseudo-file is bounded too', async (t) => {
  t.equal(ROUTE_FILE_MAX_BYTES, 32 * 1024 * 1024, 'the documented 32 MiB')
  const dir = tempDir(t)
  const file = join(dir, 'routes.json')
  writeFileSync(file, 'x'.repeat(2048))
  t.match((await refusal(file, 1024)).message, /^is 2048 bytes, over the 1024 bytes a route file may hold$/)
  writeFileSync(file, 'y'.repeat(1024))
  t.equal((await readRouteFile(file, 1024)).length, 1024, 'exactly at the cap is read')
  // /proc files are regular files that stat as 0 bytes: the cap applies while reading.
  t.match((await refusal('/proc/self/status', 100)).message, /^is more than 100 bytes/)
  t.match(await readRouteFile('/proc/self/status'), /^Name:/, 'read in full under the cap')
  const big = join(dir, 'big.json')
  writeFileSync(big, '')
  await fsp.truncate(big, ROUTE_FILE_MAX_BYTES + 1)
  t.match((await refusal(big)).message, /^is 33554433 bytes, over the 32 MiB a route file may hold$/, 'refused from its size, before reading')
})

t.test('a missing file is marked missing; UTF-8 text is returned', async (t) => {
  const dir = tempDir(t)
  const err = await refusal(join(dir, 'nope.json'))
  t.equal(err.missing, true)
  t.equal(err.message, 'does not exist')
  const file = join(dir, 'routes.json')
  writeFileSync(file, '{"vm":"café"}')
  t.equal(await readRouteFile(file), '{"vm":"café"}')
})
