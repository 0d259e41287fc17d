/**
 * @module proxy/worker-main
 * The entry point of a worker process (SPEC §12), forked by the primary's pool
 * (worker-pool.ts) with the same `--config`/`--mulch-config` arguments: it takes
 * the listening sockets the primary sends, loads the same configuration, and
 * serves until the primary tells it to drain, or goes away itself (a worker never
 * outlives its primary: it would serve a socket nobody supervises).
 */
import { parseArgs } from 'node:util'
import { loadConfig, type ProxyConfig } from './config.ts'
import { loadMulchConfig } from './mulch-config.ts'
import { startProxy, type RunningProxy } from './main.ts'
import { createIpcPeer } from './worker-ipc.ts'
import type { ListenHandle } from './listen-handle.ts'

const primary = createIpcPeer(process as unknown as Parameters<typeof createIpcPeer>[0])
const handles = new Map<string, ListenHandle>()
primary.onHandle('listen', (body, handle) => {
  if (handle !== undefined) handles.set((body as { name: string }).name, handle as unknown as ListenHandle)
})

// The primary gone (killed, crashed): drain what this worker holds and leave. Listened
// for from the start: a primary that dies while this worker is still starting (a big
// route file) must not leave it serving its sockets with nobody to supervise it.
let running: RunningProxy | undefined
let primaryGone = false
process.once('disconnect', () => {
  primaryGone = true
  running?.drain('primary gone')
})

let started = false
primary.handle('start', (body) => {
  if (started) return
  started = true
  const slot = (body as { slot: number }).slot
  void run(slot)
})

async function run (slot: number): Promise<void> {
  try {
    const { values } = parseArgs({ args: process.argv.slice(2), options: { config: { type: 'string', short: 'c' }, 'mulch-config': { type: 'string' } }, strict: false })
    const file = typeof values.config === 'string' ? values.config : undefined
    const mulch = typeof values['mulch-config'] === 'string' ? values['mulch-config'] : undefined
    const load = (): ProxyConfig => mulch === undefined ? loadConfig(file) : loadMulchConfig(mulch, file)
    const proxy = await startProxy(load(), { role: { kind: 'worker', slot, primary, handles }, loadConfig: load })
    running = proxy
    if (primaryGone) proxy.drain('primary gone')
    else primary.notify('ready')
    process.exitCode = await proxy.stopped
    process.disconnect?.()
  } catch (err) {
    primary.notify('fatal', (err as Error).message)
    // Let the notice reach the primary before leaving.
    setImmediate(() => { setImmediate(() => { process.exit(1) }) })
  }
}
