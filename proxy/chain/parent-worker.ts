/**
 * @module proxy/chain/parent-worker
 * A chain parent's worker (SPEC §12): it serves the chained domains its primary
 * publishes (proxy/chain/shared.ts) and forwards them to the children over HTTP/2
 * sessions of its own. No API, no registry, no file: those are the primary's.
 */
import type { RouteEntry } from '../router.ts'
import type { ChainDeps, ChainRuntime } from './types.ts'
import { createChainAuth } from './auth.ts'
import { createChildForwarding, entriesOf } from './parent-forward.ts'
import { parentOwnHosts } from './parent.ts'
import { ACK_TIMEOUT_MS, CHAIN_OPS, type ChainWorkers, type ChildSnapshot, type ChildrenSnapshot } from './shared.ts'

export async function startParentWorker (deps: ChainDeps, workers: Extract<ChainWorkers, { role: 'worker' }>): Promise<ChainRuntime> {
  const { config, metrics } = deps
  const logger = deps.logger.child({ chain: 'parent' })
  const { primary } = workers
  let version = -1
  let children = new Map<string, ChildSnapshot>()
  let entries: RouteEntry[] = []
  const auth = createChainAuth(config.chain.psk)
  const forwarding = createChildForwarding({ config, logger, metrics, auth, lookup: (name) => children.get(name) })

  function serve (snapshot: ChildrenSnapshot): void {
    // Answers and notices of one channel arrive in order, but the start's own
    // request may cross a publication: the newer one wins.
    if (snapshot.version <= version) return
    version = snapshot.version
    const next = new Map(snapshot.children.map((c) => [c.name, c]))
    for (const [name, before] of children) {
      if (next.get(name)?.url !== before.url) forwarding.drop(name, false)
    }
    children = next
    entries = snapshot.children.flatMap((c) => entriesOf(c, deps.hasProfile))
    deps.served.serveChained(entries)
  }

  primary.handle(CHAIN_OPS.children, (body) => {
    serve(body as ChildrenSnapshot)
    return true
  })
  primary.handle(CHAIN_OPS.probe, (body) => { forwarding.probe((body as { child: string }).child) })
  primary.handle(CHAIN_OPS.status, () => ({ sessions: Object.fromEntries(forwarding.sessions()) }))
  serve(await primary.request<ChildrenSnapshot>(CHAIN_OPS.childrenNow, undefined, ACK_TIMEOUT_MS))

  return {
    entries: () => entries,
    ownHosts: () => parentOwnHosts(config.chain.parentUrl),
    forward: forwarding.forward,
    upgrade: forwarding.upgrade,
    // This worker's part (the primary's /status has the whole).
    status: () => ({ role: 'parent', worker: workers.slot, children: children.size, sessions: Object.fromEntries(forwarding.sessions()) }),
    applySettings (settings) {
      auth.rekey(settings.psk)
      forwarding.setKeepalive(settings)
    },
    async reload (): Promise<void> {},
    async beginShutdown (): Promise<void> {},
    async stop (): Promise<void> {
      await forwarding.close()
    }
  }
}
