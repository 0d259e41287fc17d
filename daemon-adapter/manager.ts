/**
 * @module daemon-adapter/manager
 * The VM life cycle: create, rebuild, delete, lock, and the clean-up after a crash.
 * Order of every change: ask the chain parent, record it in the registry (one
 * transaction), act on the hypervisor, record the outcome (one transaction), publish
 * the route table. So the registry never points routes at a revision that is not up,
 * and whatever a crash interrupts is found `pending` or `retiring` at the next start.
 */
import { AdapterError } from './errors.ts'
import type { ParentCheck } from './chain-check.ts'
import type { Driver } from './drivers/driver.ts'
import type { Logger } from './log.ts'
import { waitForTcp } from './probe.ts'
import type { PublishReport, Publisher } from './publisher.ts'
import type { Registry, Revision, Vm } from './registry.ts'
import { claimedDomains, claimedPorts } from './vm-definition.ts'
import type { VmDefinition } from './vm-definition.ts'

export interface ManagerOptions {
  readonly registry: Registry
  readonly driver: Driver
  readonly publisher: Publisher
  /** Chain child mode only. */
  readonly parentCheck?: ParentCheck
  readonly log: Logger
  readonly upProbe: 'tcp' | 'none'
  readonly upTimeoutMs: number
  readonly retireDrainMs: number
}

/** The result of a change: the VM as it is now and what publishing the routes did. */
export interface ChangeResult {
  readonly vm: Vm | undefined
  readonly publish: PublishReport
  /** Things that went wrong after the change took effect (e.g. an old revision not torn down). */
  readonly warnings: readonly string[]
}

export interface VmManager {
  list (): Vm[]
  /** @throws AdapterError VM_NOT_FOUND */
  get (name: string): Vm
  /** Creates r0 and resolves once it serves. */
  create (definition: VmDefinition): Promise<ChangeResult>
  /** Creates r(N+1) from `definition` (default: the active one); switches once it is up, then retires rN. */
  rebuild (name: string, definition?: VmDefinition): Promise<ChangeResult>
  /** Removes the VM's routes at once, then tears down every revision. */
  remove (name: string): Promise<ChangeResult>
  setLocked (name: string, locked: boolean): Vm
  /** Start-up: tears down what a crash left half done, then rewrites the route file. */
  recover (): Promise<PublishReport>
  /** Aborts waits in progress (shutdown) and resolves when running changes have settled. */
  close (): Promise<void>
}

export function createVmManager (options: ManagerOptions): VmManager {
  const { registry, driver, publisher, parentCheck, log } = options
  const busy = new Set<string>()
  const running = new Set<Promise<unknown>>()
  const shutdown = new AbortController()

  /** Runs `fn` as the one change in progress for VM `name`. */
  async function exclusive<T> (name: string, fn: () => Promise<T>): Promise<T> {
    if (shutdown.signal.aborted) throw new AdapterError('VM_BUSY', 'the daemon is shutting down')
    if (busy.has(name)) throw new AdapterError('VM_BUSY', `VM "${name}" is being changed: wait for it to finish`, { details: { vm: name } })
    busy.add(name)
    const work = fn()
    running.add(work)
    try {
      return await work
    } finally {
      running.delete(work)
      busy.delete(name)
    }
  }

  function requireVm (name: string): Vm {
    const vm = registry.get(name)
    if (vm === undefined) throw new AdapterError('VM_NOT_FOUND', `no VM named "${name}"`, { details: { vm: name } })
    return vm
  }

  async function waitUp (revision: Revision): Promise<void> {
    if (options.upProbe === 'none') return
    const ports = [...new Set(revision.definition.domains.map((d) => d.port))]
    if (ports.length === 0) return
    await waitForTcp(revision.address, ports, { timeoutMs: options.upTimeoutMs, signal: shutdown.signal })
  }

  /** Provisions a pending revision; on any failure undoes it and drops it from the registry. */
  async function bringUp (revision: Revision): Promise<void> {
    try {
      await driver.provision(revision)
      await waitUp(revision)
    } catch (err) {
      log.warn('revision did not come up; abandoning it', { vm: revision.vm, revision: revision.number, err })
      try {
        await driver.teardown(revision)
        registry.removeRevision(revision.id)
      } catch (undo) {
        // Left `pending` in the registry: the next start retries the teardown.
        log.error('abandoned revision not torn down; retried at next start', { vm: revision.vm, revision: revision.number, err: undo })
      }
      throw err
    }
  }

  /** Tears down a retiring revision and forgets it; a failure becomes a warning. */
  async function retire (revision: Revision, warnings: string[]): Promise<void> {
    try {
      await driver.teardown(revision)
      registry.removeRevision(revision.id)
      log.info('revision retired', { vm: revision.vm, revision: revision.number })
    } catch (err) {
      const text = `revision r${revision.number} of "${revision.vm}" was not torn down (${(err as Error).message}); retried at next start`
      log.error('retiring revision failed', { vm: revision.vm, revision: revision.number, err })
      warnings.push(text)
    }
  }

  async function askParent (name: string, definition: VmDefinition): Promise<void> {
    if (parentCheck === undefined) return
    const known = registry.domainsOf(name)
    await parentCheck(claimedDomains(definition).filter((d) => !known.has(d)))
  }

  function sleep (ms: number): Promise<void> {
    if (ms <= 0 || shutdown.signal.aborted) return Promise.resolve()
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms)
      shutdown.signal.addEventListener('abort', () => { clearTimeout(timer); resolve() }, { once: true })
    })
  }

  return {
    list: () => registry.list(),
    get: requireVm,

    create (definition) {
      return exclusive(definition.name, async () => {
        if (registry.get(definition.name) !== undefined) {
          throw new AdapterError('VM_EXISTS', `a VM named "${definition.name}" already exists`, { details: { vm: definition.name } })
        }
        const local = registry.conflicts([...claimedDomains(definition), ...claimedPorts(definition)], definition.name)
        if (local.length > 0) {
          throw new AdapterError('DOMAIN_CONFLICT', local.map((c) => `${c.domain} is already claimed by VM "${c.owner}"`).join('; '), { details: { conflicts: local } })
        }
        await askParent(definition.name, definition)
        const revision = registry.beginRevision(definition, { create: true }, (n, taken) => driver.place(definition, n, taken))
        log.info('VM revision created', { vm: definition.name, revision: revision.number, address: revision.address })
        await bringUp(revision)
        registry.activate(revision.id)
        log.info('VM revision active', { vm: definition.name, revision: revision.number })
        const publish = await publisher.publish()
        return { vm: registry.get(definition.name), publish, warnings: [] }
      })
    },

    rebuild (name, newDefinition) {
      return exclusive(name, async () => {
        const vm = requireVm(name)
        if (vm.locked) throw new AdapterError('VM_LOCKED', `VM "${name}" is locked: unlock it first`, { details: { vm: name } })
        const active = vm.revisions.find((r) => r.state === 'active')
        const definition = newDefinition ?? active?.definition
        if (definition === undefined) throw new AdapterError('VM_BUSY', `VM "${name}" has no active revision to rebuild from`)
        if (definition.name !== name) {
          throw new AdapterError('VM_INVALID', `the definition is for VM "${definition.name}", not "${name}"`, { details: { key: 'name', value: definition.name } })
        }
        await askParent(name, definition)
        const revision = registry.beginRevision(definition, { create: false }, (n, taken) => driver.place(definition, n, taken))
        log.info('VM revision created', { vm: name, revision: revision.number, address: revision.address })
        await bringUp(revision)
        const old = registry.activate(revision.id)
        log.info('VM revision active', { vm: name, revision: revision.number, replaces: old?.number })
        const publish = await publisher.publish()
        const warnings: string[] = []
        if (old !== undefined) {
          // Let the proxy finish its reload and in-flight requests before the old one goes.
          await sleep(options.retireDrainMs)
          await retire(old, warnings)
        }
        return { vm: registry.get(name), publish, warnings }
      })
    },

    remove (name) {
      return exclusive(name, async () => {
        const revisions = registry.retireAll(name)
        log.info('VM deleting', { vm: name, revisions: revisions.map((r) => r.number) })
        const publish = await publisher.publish()
        const warnings: string[] = []
        for (const revision of revisions) await retire(revision, warnings)
        return { vm: registry.get(name), publish, warnings }
      })
    },

    setLocked (name, locked) {
      const vm = registry.setLocked(name, locked)
      log.info(locked ? 'VM locked' : 'VM unlocked', { vm: name })
      return vm
    },

    async recover () {
      for (const revision of registry.unfinishedRevisions()) {
        log.warn('cleaning up a revision left unfinished by a crash', { vm: revision.vm, revision: revision.number, state: revision.state })
        try {
          await driver.teardown(revision)
          registry.removeRevision(revision.id)
        } catch (err) {
          log.error('cannot tear down the unfinished revision; will retry at next start', { vm: revision.vm, revision: revision.number, err })
        }
      }
      for (const name of registry.removeEmptyVms()) log.warn('removed a VM that never came up', { vm: name })
      return await publisher.publish({ force: true })
    },

    async close () {
      shutdown.abort()
      await Promise.allSettled([...running])
    }
  }
}
