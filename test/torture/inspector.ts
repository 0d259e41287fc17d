/**
 * @module test/torture/inspector
 * The proxy of the torture stand runs with `--inspect=127.0.0.1:0`, so the runner
 * can force a full garbage collection in it and read `process.memoryUsage()`: RSS
 * alone keeps the peak an attack caused (the allocator rarely gives memory back), the
 * heap after a full GC shows what is really still held.
 */
import { pollUntil } from '../helpers/pebble.ts'

export interface HeapFigures {
  /** V8 heap in use after a full GC, KiB. */
  heapUsedKiB: number
  /** Memory of Buffers and other objects outside the V8 heap, KiB. */
  externalKiB: number
}

export interface Inspector {
  heapAfterGc (): Promise<HeapFigures>
  close (): void
}

/** Connects to the inspector whose URL the process printed on stderr. */
export async function connectInspector (stderr: () => string): Promise<Inspector> {
  let url: string | undefined
  await pollUntil(() => (url = /Debugger listening on (ws:\/\/\S+)/.exec(stderr())?.[1]) !== undefined, 10_000, 'the proxy\'s inspector URL on stderr')
  const ws = new WebSocket(url as string)
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener('open', () => { resolve() }, { once: true })
    ws.addEventListener('error', () => { reject(new Error(`cannot connect to the proxy's inspector at ${url}`)) }, { once: true })
  })
  let id = 0
  const waiting = new Map<number, (msg: { result?: unknown, error?: { message: string } }) => void>()
  ws.addEventListener('message', (event) => {
    const msg = JSON.parse(String(event.data)) as { id?: number, result?: unknown, error?: { message: string } }
    if (msg.id !== undefined) waiting.get(msg.id)?.(msg)
  })
  const call = (method: string, params: object = {}): Promise<unknown> => new Promise((resolve, reject) => {
    const n = ++id
    const timer = setTimeout(() => { waiting.delete(n); reject(new Error(`inspector: ${method} timed out`)) }, 30_000)
    waiting.set(n, (msg) => {
      clearTimeout(timer)
      waiting.delete(n)
      if (msg.error !== undefined) reject(new Error(`inspector: ${method}: ${msg.error.message}`))
      else resolve(msg.result)
    })
    ws.send(JSON.stringify({ id: n, method, params }))
  })
  return {
    async heapAfterGc () {
      await call('HeapProfiler.collectGarbage')
      const result = await call('Runtime.evaluate', { expression: 'JSON.stringify(process.memoryUsage())', returnByValue: true }) as { result: { value: string } }
      const usage = JSON.parse(result.result.value) as NodeJS.MemoryUsage
      return { heapUsedKiB: Math.round(usage.heapUsed / 1024), externalKiB: Math.round(usage.external / 1024) }
    },
    close () { ws.close() }
  }
}
