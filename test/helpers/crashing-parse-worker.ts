/**
 * A route parse worker for tests: the real one, except that a text containing
 * CRASH-THE-WORKER ends the thread (exit code 3) before any answer, as a worker
 * killed by a bug or an out-of-memory would; HANG-THE-WORKER makes it spin forever.
 */
import { parentPort } from 'node:worker_threads'

parentPort?.on('message', (request: { type: string, text?: string }) => {
  if (request.type === 'parse' && request.text?.includes('CRASH-THE-WORKER') === true) process.exit(3)
  if (request.type === 'parse' && request.text?.includes('HANG-THE-WORKER') === true) for (;;) { /* stuck */ }
})
await import('../../proxy/route-parse-worker.ts')
