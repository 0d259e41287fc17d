/**
 * @module proxy/route-parse-worker
 * The worker-thread side of big route-file reloads (route-parse-client runs it).
 * Parsing and validating 100,000 routes takes about half a second; here it does
 * not hold the proxy's event loop. The validated table stays in this thread and
 * is handed over a slice at a time on request: cloning 100,000 route objects in
 * one message would block the main thread for as long again on arrival.
 */
import { createHash } from 'node:crypto'
import { setPriority } from 'node:os'
import { parentPort } from 'node:worker_threads'
import { parseRouteFileText, type Route, type RouteProblem } from './route-table.ts'

/** Main thread → worker. */
export type ParseRequest =
  | { type: 'parse', id: number, text: string, lastHash: string | undefined, keepProblems: number }
  | { type: 'routes', id: number, from: number, to: number }
  | { type: 'release' }

/** Worker → main thread (answers carry the request's id). */
export type ParseReply =
  | { type: 'unchanged', id: number, hash: string }
  | { type: 'invalid', id: number, hash: string, errors: RouteProblem[], errorCount: number, warnings: RouteProblem[], warningCount: number }
  | { type: 'parsed', id: number, hash: string, version: number, format: 'v1' | 'mulch-legacy', count: number, warnings: RouteProblem[], warningCount: number }
  | { type: 'routes', id: number, routes: Route[] }
  | { type: 'error', id: number, message: string }

// On Linux a nice value belongs to a thread, and setpriority(PRIO_PROCESS, 0)
// means the calling one: this lowers the parse thread only, so on a busy host the
// kernel runs the serving thread first. (Elsewhere it would renice the whole
// process: not done.)
if (process.platform === 'linux') {
  try {
    setPriority(5)
  } catch { /* not allowed: parse at normal priority */ }
}

/** The routes of the last table parsed, until the main thread has taken them. */
let held: readonly Route[] = []

function answer (request: ParseRequest): ParseReply | undefined {
  if (request.type === 'release') {
    held = []
    return undefined
  }
  if (request.type === 'routes') {
    // A worker restarted between two slices holds nothing: never answer with a short table.
    if (request.to > held.length) throw new Error(`holds ${held.length} routes, not the ${request.to} asked for (restarted?)`)
    return { type: 'routes', id: request.id, routes: held.slice(request.from, request.to) }
  }
  held = []
  const hash = createHash('sha256').update(request.text).digest('hex')
  if (hash === request.lastHash) return { type: 'unchanged', id: request.id, hash }
  const parsed = parseRouteFileText(request.text)
  // Only the problems the reloader keeps cross over: 100,000 of them would be a big clone.
  const warnings = parsed.warnings.slice(0, request.keepProblems)
  if (!parsed.ok) return { type: 'invalid', id: request.id, hash, errors: parsed.errors.slice(0, request.keepProblems), errorCount: parsed.errorCount, warnings, warningCount: parsed.warningCount }
  held = parsed.table.routes
  return { type: 'parsed', id: request.id, hash, version: parsed.table.version, format: parsed.table.format, count: held.length, warnings, warningCount: parsed.warningCount }
}

parentPort?.on('message', (request: ParseRequest) => {
  let reply: ParseReply | undefined
  try {
    reply = answer(request)
  } catch (err) {
    reply = { type: 'error', id: 'id' in request ? request.id : 0, message: (err as Error).message }
  }
  if (reply !== undefined) parentPort?.postMessage(reply)
})
