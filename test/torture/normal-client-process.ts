/**
 * @module test/torture/normal-client-process
 * The "normal client" as its own process (forked by normal-client.ts), so its
 * latencies are not inflated by an attack that keeps the runner's event loop busy.
 * After `{ type: 'start', port, host, path, intervalMs, timeoutMs }` it starts one
 * GET every `intervalMs` on a fresh connection (whether or not the previous one has
 * answered, so a stall costs samples rather than hiding them); `{ type: 'stop' }`
 * waits for the requests in flight (each bounded by `timeoutMs`) and answers them all.
 */
import http from 'node:http'

interface Start { type: 'start', port: number, host: string, path: string, intervalMs: number, timeoutMs: number }
interface Result { ms: number, status?: number, error?: string }

const results: Result[] = []
const pending = new Set<Promise<void>>()
let timer: NodeJS.Timeout | undefined

function once (opts: Start): Promise<void> {
  const started = performance.now()
  return new Promise((resolve) => {
    let done = false
    const finish = (r: Omit<Result, 'ms'>): void => {
      if (done) return
      done = true
      results.push({ ms: performance.now() - started, ...r })
      resolve()
    }
    const req = http.request({ host: '127.0.0.1', port: opts.port, path: opts.path, agent: false, headers: { host: opts.host, connection: 'close' } }, (res) => {
      res.resume()
      res.on('end', () => { finish({ status: res.statusCode }) })
      res.on('error', (err) => { finish({ error: (err as NodeJS.ErrnoException).code ?? err.message }) })
    })
    // One deadline for the whole exchange, body included.
    const deadline = setTimeout(() => { finish({ error: 'timeout' }); req.destroy() }, opts.timeoutMs)
    req.on('close', () => { clearTimeout(deadline) })
    req.on('error', (err) => { finish({ error: (err as NodeJS.ErrnoException).code ?? err.message }) })
    req.end()
  })
}

process.on('message', (msg: Start | { type: 'stop' }) => {
  if (msg.type === 'start') {
    const opts = msg
    const tick = (): void => {
      const p = once(opts)
      pending.add(p)
      void p.then(() => pending.delete(p))
    }
    tick()
    timer = setInterval(tick, opts.intervalMs)
  } else if (msg.type === 'stop') {
    clearInterval(timer)
    void Promise.all(pending).then(() => { process.send?.({ type: 'results', results }) })
  }
})
process.on('disconnect', () => { process.exit(0) })
process.send?.({ type: 'ready' })
