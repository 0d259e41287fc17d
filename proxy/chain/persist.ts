/**
 * @module proxy/chain/persist
 * Saves the parent's chain registrations in data_dir so a restarted parent serves
 * chained domains at once (their leases restart on load). Writes are atomic
 * (temp file, fsync, rename, mode 0600) and serialised: a burst of changes ends
 * with the last state on disk, never a half-written file.
 *
 * A write costs O(children), so it must not happen once per registration: saves
 * are coalesced (the snapshot is taken when a write starts, not when asked for)
 * and spaced by `minIntervalMs`, so a burst of N registrations costs a handful of
 * writes, not N. A crash loses at most that interval's changes, which the
 * children restore themselves at their next renewal.
 */
import { open, readFile, rename, unlink } from 'node:fs/promises'
import type { Logger } from '../log.ts'
import type { ChildRecord } from './registry.ts'
import { parseMulchDomains } from './mulch-api.ts'
import { parseChildName, parseChildUrl, parseRegisterRequest, toWireDomain } from './schema.ts'

/** The file's format version. */
const FORMAT_VERSION = 1

/** What is saved of a child: no lease times (a lease restarts on load). */
export type SavedChild = Pick<ChildRecord, 'name' | 'url' | 'domains' | 'registeredAt' | 'protocol'>

export interface RegistrationStore {
  /** Reads the saved children; a missing file is an empty list, a corrupt one is logged and ignored. */
  load (): Promise<SavedChild[]>
  /**
   * Schedules a save (coalesced); resolves once a write that includes this state
   * is on disk. Give a function to defer building the snapshot to the write.
   */
  save (children: readonly ChildRecord[] | (() => readonly ChildRecord[])): Promise<void>
}

export interface RegistrationStoreOptions {
  /** Least time from the start of one write to the start of the next (default 0). */
  minIntervalMs?: number
}

/** Creates the store for `file` (e.g. `<data_dir>/chain-children.json`). */
export function createRegistrationStore (file: string, logger: Logger, options: RegistrationStoreOptions = {}): RegistrationStore {
  const minIntervalMs = options.minIntervalMs ?? 0
  let writing: Promise<void> = Promise.resolve()
  let pending: readonly ChildRecord[] | (() => readonly ChildRecord[]) | undefined
  let pendingDone: Promise<void> | undefined
  let lastWriteAt = -Infinity

  async function write (children: readonly ChildRecord[]): Promise<void> {
    const doc = {
      version: FORMAT_VERSION,
      children: children.map((c) => ({
        name: c.name,
        child_url: c.url,
        registered_at: new Date(c.registeredAt).toISOString(),
        domains: c.domains.map(toWireDomain),
        // A Mulch child has no lease to renew: it must survive restarts as it is.
        ...(c.protocol === 'mulch' ? { protocol: 'mulch' } : {})
      }))
    }
    const tmp = `${file}.${process.pid}.tmp`
    const handle = await open(tmp, 'w', 0o600)
    try {
      await handle.writeFile(JSON.stringify(doc, null, 2) + '\n')
      await handle.sync()
    } finally {
      await handle.close()
    }
    try {
      await rename(tmp, file)
    } catch (err) {
      await unlink(tmp).catch(() => {})
      throw err
    }
  }

  return {
    async load (): Promise<SavedChild[]> {
      let text: string
      try {
        text = await readFile(file, 'utf8')
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') logger.error('chain registrations unreadable: starting with none', { file, err })
        return []
      }
      try {
        const doc = JSON.parse(text) as { version?: unknown, children?: unknown }
        if (doc.version !== FORMAT_VERSION || !Array.isArray(doc.children)) throw new Error(`not a version ${FORMAT_VERSION} registrations file`)
        return doc.children.map((c: Record<string, unknown>, i: number) => {
          // The register schema checks the saved fields like a live request.
          // A Mulch child is named by its ForwardTo origin (see mulch-api.ts).
          // A Mulch child is named by its ForwardTo origin and its domains follow
          // mulchd's rules (`_` allowed), as mulch-api.ts took them.
          const at = Date.parse(String(c.registered_at))
          const registeredAt = Number.isFinite(at) ? at : Date.now()
          if (c.protocol === 'mulch') {
            const wire = Array.isArray(c.domains) ? c.domains as Array<{ domain?: unknown, rate_profile?: unknown }> : []
            const m = parseMulchDomains({ Domains: wire.map((d) => ({ Domain: d.domain, RateProfile: d.rate_profile ?? '' })), ForwardTo: parseChildUrl(c.child_url, `children[${i}].child_url`) })
            return { name: m.forwardTo, url: m.forwardTo, domains: m.domains, registeredAt, protocol: 'mulch' as const }
          }
          const parsed = parseRegisterRequest({ name: parseChildName(c.name, `children[${i}].name`), child_url: parseChildUrl(c.child_url, `children[${i}].child_url`), domains: c.domains })
          return { name: parsed.name, url: parsed.childUrl, domains: parsed.domains, registeredAt }
        })
      } catch (err) {
        logger.error('chain registrations file corrupt: starting with none', { file, err })
        return []
      }
    },
    save (children): Promise<void> {
      pending = children
      // One write at a time; changes arriving meanwhile share the next write.
      pendingDone ??= writing.then(async () => {
        const wait = lastWriteAt + minIntervalMs - Date.now()
        if (wait > 0) await new Promise((resolve) => { setTimeout(resolve, wait) })
        const next = pending!
        pending = undefined
        pendingDone = undefined
        lastWriteAt = Date.now()
        await write(typeof next === 'function' ? next() : next)
      })
      writing = pendingDone.catch((err: unknown) => { logger.error('saving chain registrations failed', { file, err }) })
      return writing
    }
  }
}
