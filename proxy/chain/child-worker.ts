/**
 * @module proxy/chain/child-worker
 * A chain child's worker (SPEC §12): it serves the parent on its share of the
 * listeners (h2c, session proofs: child-serve.ts) while its primary registers,
 * once for the proxy. The WebSocket tickets are the primary's (the upgrade that
 * brings one may reach another worker than the session that asked for it), and
 * so is what the registration learnt of the parent (its protocol, a Mulch
 * parent's addresses), pushed here when it changes.
 */
import type { IpcPeer } from '../worker-ipc.ts'
import type { ChainDeps, ChainRuntime } from './types.ts'
import { createChainAuth } from './auth.ts'
import { childOwnHosts } from './child.ts'
import { createChildServing } from './child-serve.ts'
import { createMulchParentTrust } from './mulch-trust.ts'
import type { TicketCheck, TicketStore } from './parent-trust.ts'
import { ACK_TIMEOUT_MS, CHAIN_OPS, type ChainWorkers, type ChildTrustState } from './shared.ts'

/** The primary's ticket store, over IPC. */
export function createRemoteTicketStore (primary: IpcPeer): TicketStore {
  return {
    async issue (peer) {
      return (await primary.request<string | null>(CHAIN_OPS.ticketIssue, { peer }, ACK_TIMEOUT_MS)) ?? undefined
    },
    async take (ticket, peer) {
      return await primary.request<TicketCheck>(CHAIN_OPS.ticketTake, { ticket, peer }, ACK_TIMEOUT_MS)
    }
  }
}

export async function startChildWorker (deps: ChainDeps, workers: Extract<ChainWorkers, { role: 'worker' }>): Promise<ChainRuntime> {
  const { config, metrics } = deps
  const chain = config.chain
  const { primary } = workers
  const logger = deps.logger.child({ chain: 'child' })
  const auth = createChainAuth(chain.psk)
  const mulchTrust = createMulchParentTrust({ auth, parentUrl: chain.parentUrl, logger, onFailure: () => { metrics.chainAuthFailures.inc() } })
  let protocol: ChildTrustState['protocol'] = chain.parentProtocol === 'mulch' ? 'mulch' : 'vmfront'
  const serving = createChildServing({ deps, auth, childOrigin: new URL(chain.childUrl).origin, tickets: createRemoteTicketStore(primary), mulchTrust, protocol: () => protocol })

  const believe = (state: ChildTrustState): void => {
    protocol = state.protocol
    mulchTrust.adopt(state.mulchAddresses)
  }
  primary.handle(CHAIN_OPS.childState, (body) => {
    believe(body as ChildTrustState)
    return true
  })
  primary.handle(CHAIN_OPS.status, () => serving.counts())
  believe(await primary.request<ChildTrustState>(CHAIN_OPS.childStateNow, undefined, ACK_TIMEOUT_MS))

  return {
    entries: () => [],
    ownHosts: () => childOwnHosts(chain.childUrl),
    fromParent: serving.fromParent,
    parentRedirects: serving.parentRedirects,
    attachListener: serving.attachListener,
    // This worker's part (the primary's /status has the whole).
    status: () => ({ role: 'child', worker: workers.slot, parent_protocol: protocol, ...serving.counts() }),
    applySettings: (settings) => { auth.rekey(settings.psk) },
    async reload (): Promise<void> {},
    async beginShutdown (): Promise<void> {
      serving.drain()
    },
    async stop (): Promise<void> {
      serving.destroyAll()
    }
  }
}
