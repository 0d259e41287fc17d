/**
 * @module proxy/worker-entry
 * What a worker process starts with (forked by worker-sources.ts). Plain JavaScript
 * on purpose: a .ts entry would make Node load its TypeScript stripper (amaro, about
 * 12 MiB per process) before anything else. It reads the sources its primary stripped
 * (a JSON object, file URL to JavaScript, on the descriptor its environment names),
 * serves them to Node's loader as JavaScript, then loads worker-main.ts. A module
 * missing from them, or no sources at all, is loaded by Node as usual (slower to
 * start, heavier, but the same code).
 */
import { closeSync, readFileSync } from 'node:fs'
import { registerHooks } from 'node:module'

const fdText = process.env.VMFRONT_WORKER_SOURCES_FD
delete process.env.VMFRONT_WORKER_SOURCES_FD
/** @type {Map<string, string>} */
let sources = new Map()
if (fdText !== undefined && /^\d+$/.test(fdText)) {
  const fd = Number(fdText)
  try {
    sources = new Map(Object.entries(JSON.parse(readFileSync(fd, 'utf8'))))
  } catch {
    // Unreadable or cut short (the primary died while writing): Node strips instead.
  } finally {
    try { closeSync(fd) } catch {}
  }
}

registerHooks({
  load (url, context, nextLoad) {
    const source = sources.get(url)
    if (source === undefined) return nextLoad(url, context)
    // A module is loaded once: its text is not needed again.
    sources.delete(url)
    return { format: 'module', source, shortCircuit: true }
  }
})

await import('./worker-main.ts')
