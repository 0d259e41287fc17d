/**
 * @module proxy/chain/shared
 * The chain with workers (SPEC §12: "one chain API, one registration of a child
 * with its parent"): what the primary keeps, what each worker does itself, and
 * the IPC operations between them (over proxy/worker-ipc.ts).
 *
 * Parent: the primary runs the chain API, the registry, the leases and their
 * file, exactly as a single process does, and publishes the registered children
 * (a snapshot, versioned) to every worker, which serves their domains and
 * forwards to them over HTTP/2 sessions of its own. A change counts as made
 * once every worker has acknowledged it: the registration's answer (and its log
 * line) wait for that, so a child that was told "registered" is served by every
 * worker.
 *
 * Child: the primary registers, renews and deregisters, once; every worker
 * serves h2c and answers the parent's session proofs itself (the PSK is in the
 * config). The one-time WebSocket tickets live in the primary: the parent asks
 * for one on an HTTP/2 session (one worker) and brings it on a new HTTP/1.1
 * connection (any worker), and a ticket must be spent once, whoever takes it.
 */
import type { IpcPeer } from '../worker-ipc.ts'
import type { ChildRecord } from './registry.ts'

/** How this process takes part in the chain when the proxy runs workers. */
export type ChainWorkers =
  | { readonly role: 'primary' }
  | { readonly role: 'worker', readonly slot: number, readonly primary: IpcPeer }

/** IPC operations of the chain (requests unless said otherwise). */
export const CHAIN_OPS = {
  /** primary → worker: `ChildrenSnapshot`; answered once served. */
  children: 'chain.children',
  /** worker → primary, at the worker's start: the current `ChildrenSnapshot`. */
  childrenNow: 'chain.children.now',
  /** primary → worker, notice `{ child }`: it registered again, a pool waiting to reconnect may try now. */
  probe: 'chain.probe',
  /** primary → worker: the worker's own chain figures (sessions), for /status. */
  status: 'chain.status',
  /** worker → primary `{ peer }`: a new ticket (64 hex), or null when too many are outstanding. */
  ticketIssue: 'chain.ticket.issue',
  /** worker → primary `{ ticket, peer }`: spends a ticket; a `TicketCheck` (parent-trust.ts). */
  ticketTake: 'chain.ticket.take',
  /** primary → worker: `ChildTrustState` (answered once applied); worker → primary (`.now`) at its start. */
  childState: 'chain.child.state',
  childStateNow: 'chain.child.state.now'
} as const

/** A registered child as a worker needs it: where to forward, which domains. */
export type ChildSnapshot = Pick<ChildRecord, 'name' | 'url' | 'domains' | 'protocol'>

export interface ChildrenSnapshot {
  /** Grows with every publication: a worker ignores one older than what it serves. */
  readonly version: number
  readonly children: readonly ChildSnapshot[]
}

/** What a child's workers need to know of the registration the primary made. */
export interface ChildTrustState {
  /** The parent's protocol, learnt at registration ("auto" may find a mulch-proxy). */
  readonly protocol: 'vmfront' | 'mulch'
  /** The addresses a Mulch parent's `Mulch-PSK` requests are believed from. */
  readonly mulchAddresses: readonly string[]
}

/** How long the primary waits for a worker's acknowledgement (a hung worker is not waited for longer). */
export const ACK_TIMEOUT_MS = 5000

/**
 * The workers the chain runtime of a primary talks to, by slot (a replaced
 * worker takes its slot's place).
 */
export interface WorkerPeers {
  /** Adds a worker's channel; returns what removes it (its process is gone). */
  add (slot: number, peer: IpcPeer): () => void
  /** Tells every worker (no answer). */
  notify (op: string, body?: unknown): void
  /** Asks every worker; resolves when each answered, failed or timed out (never rejects). */
  ask<T>(op: string, body?: unknown, timeoutMs?: number): Promise<Array<{ slot: number, value: T }>>
}

export function createWorkerPeers (): WorkerPeers {
  const peers = new Map<number, IpcPeer>()
  return {
    add (slot, peer) {
      peers.set(slot, peer)
      return () => { if (peers.get(slot) === peer) peers.delete(slot) }
    },
    notify (op, body) {
      for (const peer of peers.values()) peer.notify(op, body)
    },
    async ask<T>(op: string, body?: unknown, timeoutMs = ACK_TIMEOUT_MS) {
      const answers = await Promise.all([...peers].map(async ([slot, peer]): Promise<{ slot: number, value: T } | undefined> => {
        try {
          return { slot, value: await peer.request<T>(op, body, timeoutMs) }
        } catch {
          // A worker that is gone or hung: the others are not held for it, and a
          // replacement asks for the current state when it starts.
          return undefined
        }
      }))
      return answers.filter((a): a is { slot: number, value: T } => a !== undefined).sort((a, b) => a.slot - b.slot)
    }
  }
}
