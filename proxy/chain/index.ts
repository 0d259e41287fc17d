/**
 * @module proxy/chain
 * Parent/child chaining (SPEC §7): the runtime main.ts starts when chain.mode is
 * "parent" or "child". This is the one entry point main.ts uses.
 *
 * - parent (parent.ts): the chain API on parent_url, the registry of children
 *   with leases (saved in data_dir), and HTTP/2 forwarding of chained domains
 *   over pooled sessions with a PING keepalive that tears dead sessions down.
 * - child (child.ts): registration and renewal at the parent, h2c on the plain
 *   listener, and recognition of the authenticated parent's requests.
 * - with workers (SPEC §12, shared.ts): the primary runs the API, registry and
 *   registration; each worker forwards (parent-worker.ts) or serves the parent
 *   (child-worker.ts) itself.
 */
import type { ChainDeps, ChainRuntime } from './types.ts'
import { startParent } from './parent.ts'
import { startChild } from './child.ts'
import { startParentWorker } from './parent-worker.ts'
import { startChildWorker } from './child-worker.ts'

/** Starts the chain runtime for the configured mode; undefined for mode "none". */
export async function startChain (deps: ChainDeps): Promise<ChainRuntime | undefined> {
  const worker = deps.workers?.role === 'worker' ? deps.workers : undefined
  switch (deps.config.chain.mode) {
    case 'none': return undefined
    case 'parent': return worker === undefined ? await startParent(deps) : await startParentWorker(deps, worker)
    case 'child': return worker === undefined ? await startChild(deps) : await startChildWorker(deps, worker)
  }
}
