/**
 * @module proxy/worker-sources
 * Starts worker processes without Node's TypeScript stripper. Stripping a .ts file
 * loads amaro (a WASM module) into the process that strips it, and it stays there:
 * measured at about 12 MiB of private memory per process. The primary has it loaded
 * anyway (it runs .ts), so it strips, once, the sources a worker loads and hands them
 * to each worker through a pipe; worker-entry.js serves them to Node's loader as plain
 * JavaScript. A worker thus runs exactly the code its primary read (a worker replaced
 * after the files were upgraded in place does not mix versions with its primary; the
 * new code comes with `vmfront proxy --takeover`). A module the primary did not
 * strip (a dynamic import whose path is computed) is loaded by Node as usual.
 * Held in memory, never written to disk: no cache directory to secure or go stale.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { stripTypeScriptTypes } from 'node:module'
import { fileURLToPath } from 'node:url'

const ENTRY = fileURLToPath(new URL('./worker-entry.js', import.meta.url))
/** Where worker-entry.js starts loading (and where the walk below starts). */
export const WORKER_MAIN_URL = new URL('./worker-main.ts', import.meta.url).href
/**
 * The child's descriptor the sources arrive on (0-2 stdio, 3 the IPC channel); named to
 * the child in its environment, so worker-entry.js reads nothing it was not given.
 */
export const SOURCES_FD = 4
export const SOURCES_FD_ENV = 'VMFRONT_WORKER_SOURCES_FD'

/**
 * V8's young generation for a worker, in MiB per semi-space. V8's default lets new
 * space grow to 64-128 MiB under the bench load; requests' garbage dies young, and 8
 * (16 MiB of new space) keeps a worker's peak about 20 MiB lower at the same share of
 * CPU spent in GC (measured under `npm run bench:workers`; README "Workers and
 * takeover"). A value the operator set (node's own flags or NODE_OPTIONS) wins.
 */
export const WORKER_SEMI_SPACE_MIB = 8

/** The node flags a worker starts with: the primary's own, after our defaults (later ones win). */
export function workerExecArgv (execArgv: readonly string[] = process.execArgv, nodeOptions: string = process.env.NODE_OPTIONS ?? ''): string[] {
  const set = [...execArgv, nodeOptions].some((a) => /--max[-_]semi[-_]space[-_]size/.test(a))
  return [...(set ? [] : [`--max-semi-space-size=${WORKER_SEMI_SPACE_MIB}`]), ...execArgv]
}

/** Relative .ts specifiers in stripped code: static imports and re-exports, side-effect and dynamic imports with a literal. */
const TS_SPECIFIER = /(?:\bfrom\s*|\bimport\s*\(?\s*)(['"])(\.{1,2}\/[^'"]+\.ts)\1/g

/**
 * Node's stripping, without its one-time ExperimentalWarning on stderr (the API is
 * experimental; what it returns is what Node's loader runs for the same file).
 */
function strip (code: string): string {
  const emitWarning = process.emitWarning
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    if (String(warning).startsWith('stripTypeScriptTypes')) return
    ;(emitWarning as (...args: unknown[]) => void).call(process, warning, ...rest)
  }) as typeof process.emitWarning
  try {
    return stripTypeScriptTypes(code, { mode: 'strip' })
  } finally {
    process.emitWarning = emitWarning
  }
}

/**
 * The stripped JavaScript of every .ts module reachable from `entryUrl` through
 * relative imports, by file URL. A file that cannot be read or stripped is left out
 * (Node loads it itself and reports its error as it would have).
 */
export function collectWorkerSources (entryUrl: string = WORKER_MAIN_URL): Map<string, string> {
  const out = new Map<string, string>()
  const pending = [entryUrl]
  for (let url = pending.pop(); url !== undefined; url = pending.pop()) {
    if (out.has(url)) continue
    let code: string
    try {
      code = strip(readFileSync(new URL(url), 'utf8'))
    } catch {
      continue
    }
    out.set(url, code)
    for (const m of code.matchAll(TS_SPECIFIER)) pending.push(new URL(m[2], url).href)
  }
  return out
}

export interface WorkerForker {
  /** Forks a worker process running worker-main.ts with `args` and `env`. */
  fork (args: readonly string[], env: NodeJS.ProcessEnv): ChildProcess
}

/** One per pool: the sources are stripped at the first fork and reused for every later one. */
export function createWorkerForker (): WorkerForker {
  let blob: Buffer | undefined
  return {
    fork (args, env) {
      blob ??= Buffer.from(JSON.stringify(Object.fromEntries(collectWorkerSources())))
      const child = fork(ENTRY, [...args], {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc', 'pipe'],
        env: { ...env, [SOURCES_FD_ENV]: String(SOURCES_FD) },
        execArgv: workerExecArgv()
      })
      const pipe = child.stdio[SOURCES_FD]
      if (pipe !== null && pipe !== undefined && 'end' in pipe) {
        // A worker that dies before reading it all: EPIPE here, and its exit is handled by the pool.
        pipe.on('error', () => {})
        pipe.end(blob)
      }
      return child
    }
  }
}
