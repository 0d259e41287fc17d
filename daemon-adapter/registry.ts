/**
 * @module daemon-adapter/registry
 * The VM registry in node:sqlite: VMs, their revisions and the domains each revision
 * claims. Every change is one transaction, so a crash at any point leaves either the
 * state before or the state after it; the schema itself refuses a domain claimed by
 * two VMs and a second active or pending revision of one VM.
 */
import { DatabaseSync } from 'node:sqlite'
import type { SQLInputValue } from 'node:sqlite'
import { AdapterError } from './errors.ts'
import { claimedDomains as definitionDomains, claimedPorts } from './vm-definition.ts'
import type { VmDefinition } from './vm-definition.ts'

/** What a definition claims: its domains and its public TCP ports (one namespace, so one conflict check). */
function claimedDomains (definition: VmDefinition): string[] {
  return [...definitionDomains(definition), ...claimedPorts(definition)]
}

/** The registry's database file inside the daemon's `data_dir`. */
export const REGISTRY_FILE = 'registry.sqlite'

/** A revision's life: `pending` while it comes up, `active` while it serves, `retiring` while it is torn down. */
export type RevisionState = 'pending' | 'active' | 'retiring'

/** Where a revision runs, as chosen by its driver. */
export interface Placement {
  /** The host the proxy forwards to (an IP or a host name). */
  readonly address: string
  /** An IP the driver hands out and that no other revision may take (libvirt), else undefined. */
  readonly ip?: string
  /** A MAC the driver hands out and that no other revision may take (libvirt), else undefined. */
  readonly mac?: string
  /** The driver's own name for the revision (the libvirt domain name). */
  readonly handle: string
}

export interface Revision extends Placement {
  readonly id: number
  readonly vm: string
  readonly number: number
  readonly state: RevisionState
  readonly definition: VmDefinition
  readonly createdAt: string
}

export interface Vm {
  readonly name: string
  readonly locked: boolean
  readonly createdAt: string
  /** Newest first. */
  readonly revisions: readonly Revision[]
}

/** What `beginRevision` needs to choose a placement: the IPs and MACs already taken. */
export interface Taken {
  readonly ips: ReadonlySet<string>
  readonly macs: ReadonlySet<string>
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS vms (
  name        TEXT PRIMARY KEY,
  locked      INTEGER NOT NULL DEFAULT 0,
  created_at  TEXT NOT NULL,
  next_number INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE TABLE IF NOT EXISTS revisions (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  vm          TEXT NOT NULL REFERENCES vms(name) ON DELETE CASCADE,
  number      INTEGER NOT NULL,
  state       TEXT NOT NULL CHECK (state IN ('pending', 'active', 'retiring')),
  definition  TEXT NOT NULL,
  address     TEXT NOT NULL,
  ip          TEXT UNIQUE,
  mac         TEXT UNIQUE,
  handle      TEXT NOT NULL,
  created_at  TEXT NOT NULL,
  UNIQUE (vm, number)
) STRICT;
CREATE UNIQUE INDEX IF NOT EXISTS one_active_revision ON revisions(vm) WHERE state = 'active';
CREATE UNIQUE INDEX IF NOT EXISTS one_pending_revision ON revisions(vm) WHERE state = 'pending';
CREATE TABLE IF NOT EXISTS claims (
  domain      TEXT NOT NULL,
  vm          TEXT NOT NULL,
  revision_id INTEGER NOT NULL REFERENCES revisions(id) ON DELETE CASCADE,
  PRIMARY KEY (domain, revision_id)
) STRICT;
CREATE INDEX IF NOT EXISTS claims_by_domain ON claims(domain);
CREATE TRIGGER IF NOT EXISTS claims_one_owner BEFORE INSERT ON claims
WHEN EXISTS (SELECT 1 FROM claims WHERE domain = NEW.domain AND vm <> NEW.vm)
BEGIN SELECT RAISE(ABORT, 'domain claimed by another VM'); END;
CREATE TABLE IF NOT EXISTS meta (
  key         TEXT PRIMARY KEY,
  value       TEXT NOT NULL
) STRICT;
`

/** `meta` key: SHA-256 (hex) of the route file content the daemon may overwrite (the last it wrote, or one adopted by import-routes). */
const ROUTES_HASH_KEY = 'routes_file_sha256'

interface RevisionRow {
  id: number
  vm: string
  number: number
  state: RevisionState
  definition: string
  address: string
  ip: string | null
  mac: string | null
  handle: string
  created_at: string
}

function toRevision (row: RevisionRow): Revision {
  const revision: Revision = {
    id: row.id,
    vm: row.vm,
    number: row.number,
    state: row.state,
    definition: JSON.parse(row.definition) as VmDefinition,
    address: row.address,
    handle: row.handle,
    createdAt: row.created_at
  }
  if (row.ip !== null) Object.assign(revision, { ip: row.ip })
  if (row.mac !== null) Object.assign(revision, { mac: row.mac })
  return Object.freeze(revision)
}

/** The registry's operations; each is atomic. */
export interface Registry {
  /** All VMs with their revisions, by name. */
  list (): Vm[]
  get (name: string): Vm | undefined
  /** The active revision of every VM: what the route table is made of. */
  activeRevisions (): Revision[]
  /** Revisions left `pending` or `retiring` by a crash, to clean up at start. */
  unfinishedRevisions (): Revision[]
  /** Which VM (if any other than `vm`) holds each of `domains`. */
  conflicts (domains: readonly string[], vm: string): { domain: string, owner: string }[]
  /** Domains any revision of `vm` claims. */
  domainsOf (vm: string): Set<string>
  /**
   * Adds a `pending` revision (and the VM when `create` is true) claiming the
   * definition's domains. `place` picks the placement given what is taken.
   * @throws AdapterError VM_EXISTS, VM_NOT_FOUND, VM_LOCKED, VM_BUSY, DOMAIN_CONFLICT
   */
  beginRevision (definition: VmDefinition, options: { create: boolean }, place: (number: number, taken: Taken) => Placement): Revision
  /** Makes `id` the active revision; the previously active one becomes `retiring`. Returns that one, if any. */
  activate (id: number): Revision | undefined
  /** Marks every revision of `vm` `retiring`, so its routes go at once. @throws VM_NOT_FOUND, VM_LOCKED */
  retireAll (vm: string): Revision[]
  /** Deletes a revision (its claims go with it); the VM goes too when it has no revision left. */
  removeRevision (id: number): void
  /** Deletes VMs left with no revision (a crash between a create and its first activation). */
  removeEmptyVms (): string[]
  setLocked (vm: string, locked: boolean): Vm
  /** SHA-256 (hex) of the route file content the daemon may overwrite, if any is recorded. */
  routesFileHash (): string | undefined
  /** Records the SHA-256 of the route file content just written (or adopted). */
  setRoutesFileHash (hash: string): void
  /**
   * Adds each definition as a VM with one active revision placed by `place`, and
   * records `routesHash` as a route file the daemon may overwrite: all in one
   * transaction, so either every VM is adopted or none.
   * @throws AdapterError VM_EXISTS, DOMAIN_CONFLICT (nothing is changed)
   */
  adoptVms (definitions: readonly VmDefinition[], place: (definition: VmDefinition, taken: Taken) => Placement, routesHash: string): Revision[]
  close (): void
}

/**
 * Opens (creating if needed) the registry database at `file` in WAL mode, with
 * foreign keys on and `synchronous = FULL` so a committed change survives power loss.
 */
export function openRegistry (file: string, now: () => Date = () => new Date()): Registry {
  const db = new DatabaseSync(file, { timeout: 5000 })
  db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;')
  db.exec(SCHEMA)

  /** Runs `fn` in an IMMEDIATE transaction: all of it or none of it. */
  function transaction<T> (fn: () => T): T {
    db.exec('BEGIN IMMEDIATE')
    try {
      const result = fn()
      db.exec('COMMIT')
      return result
    } catch (err) {
      db.exec('ROLLBACK')
      throw err
    }
  }

  const all = <T>(sql: string, ...params: SQLInputValue[]): T[] => db.prepare(sql).all(...params) as T[]
  const one = <T>(sql: string, ...params: SQLInputValue[]): T | undefined => db.prepare(sql).get(...params) as T | undefined
  const run = (sql: string, ...params: SQLInputValue[]): void => { db.prepare(sql).run(...params) }

  function vmRow (name: string): { name: string, locked: number, created_at: string, next_number: number } | undefined {
    return one('SELECT name, locked, created_at, next_number FROM vms WHERE name = ?', name)
  }

  function get (name: string): Vm | undefined {
    const row = vmRow(name)
    if (row === undefined) return undefined
    const revisions = all<RevisionRow>('SELECT * FROM revisions WHERE vm = ? ORDER BY number DESC', name).map(toRevision)
    return Object.freeze({ name: row.name, locked: row.locked === 1, createdAt: row.created_at, revisions: Object.freeze(revisions) })
  }

  function requireVm (name: string): NonNullable<ReturnType<typeof vmRow>> {
    const row = vmRow(name)
    if (row === undefined) throw new AdapterError('VM_NOT_FOUND', `no VM named "${name}"`, { details: { vm: name } })
    return row
  }

  function conflicts (domains: readonly string[], vm: string): { domain: string, owner: string }[] {
    const found: { domain: string, owner: string }[] = []
    for (const domain of domains) {
      const row = one<{ vm: string }>('SELECT vm FROM claims WHERE domain = ? AND vm <> ? LIMIT 1', domain, vm)
      if (row !== undefined) found.push({ domain, owner: row.vm })
    }
    return found
  }

  return {
    list: () => all<{ name: string }>('SELECT name FROM vms ORDER BY name').map((r) => get(r.name)).filter((v) => v !== undefined),
    get,
    activeRevisions: () => all<RevisionRow>("SELECT * FROM revisions WHERE state = 'active' ORDER BY vm").map(toRevision),
    unfinishedRevisions: () => all<RevisionRow>("SELECT * FROM revisions WHERE state <> 'active' ORDER BY id").map(toRevision),
    conflicts,
    domainsOf: (vm) => new Set(all<{ domain: string }>('SELECT DISTINCT domain FROM claims WHERE vm = ?', vm).map((r) => r.domain)),

    beginRevision (definition, options, place) {
      return transaction(() => {
        const name = definition.name
        let row = vmRow(name)
        if (options.create) {
          if (row !== undefined) throw new AdapterError('VM_EXISTS', `a VM named "${name}" already exists`, { details: { vm: name } })
          run('INSERT INTO vms (name, locked, created_at, next_number) VALUES (?, 0, ?, 0)', name, now().toISOString())
          row = requireVm(name)
        } else {
          row = requireVm(name)
          if (row.locked === 1) throw new AdapterError('VM_LOCKED', `VM "${name}" is locked: unlock it first`, { details: { vm: name } })
        }
        const busy = one<{ state: string, number: number }>("SELECT state, number FROM revisions WHERE vm = ? AND state <> 'active' LIMIT 1", name)
        if (busy !== undefined) {
          throw new AdapterError('VM_BUSY', `VM "${name}" has revision r${busy.number} ${busy.state}: wait for it to finish`, { details: { vm: name } })
        }
        const domains = claimedDomains(definition)
        const found = conflicts(domains, name)
        if (found.length > 0) {
          const text = found.map((c) => `${c.domain} is already claimed by VM "${c.owner}"`).join('; ')
          throw new AdapterError('DOMAIN_CONFLICT', text, { details: { conflicts: found } })
        }
        const taken: Taken = {
          ips: new Set(all<{ ip: string }>('SELECT ip FROM revisions WHERE ip IS NOT NULL').map((r) => r.ip)),
          macs: new Set(all<{ mac: string }>('SELECT mac FROM revisions WHERE mac IS NOT NULL').map((r) => r.mac))
        }
        const number = row.next_number
        const placement = place(number, taken)
        const result = db.prepare(`INSERT INTO revisions (vm, number, state, definition, address, ip, mac, handle, created_at)
          VALUES (?, ?, 'pending', ?, ?, ?, ?, ?, ?)`).run(
          name, number, JSON.stringify(definition), placement.address, placement.ip ?? null, placement.mac ?? null,
          placement.handle, now().toISOString())
        const id = Number(result.lastInsertRowid)
        run('UPDATE vms SET next_number = ? WHERE name = ?', number + 1, name)
        for (const domain of domains) run('INSERT INTO claims (domain, vm, revision_id) VALUES (?, ?, ?)', domain, name, id)
        return toRevision(one<RevisionRow>('SELECT * FROM revisions WHERE id = ?', id) as RevisionRow)
      })
    },

    activate (id) {
      return transaction(() => {
        const target = one<RevisionRow>('SELECT * FROM revisions WHERE id = ?', id)
        if (target === undefined || target.state !== 'pending') {
          throw new AdapterError('INTERNAL', `revision ${id} is not pending`)
        }
        const old = one<RevisionRow>("SELECT * FROM revisions WHERE vm = ? AND state = 'active'", target.vm)
        if (old !== undefined) run("UPDATE revisions SET state = 'retiring' WHERE id = ?", old.id)
        run("UPDATE revisions SET state = 'active' WHERE id = ?", id)
        return old === undefined ? undefined : toRevision({ ...old, state: 'retiring' })
      })
    },

    retireAll (vm) {
      return transaction(() => {
        const row = requireVm(vm)
        if (row.locked === 1) throw new AdapterError('VM_LOCKED', `VM "${vm}" is locked: unlock it first`, { details: { vm } })
        const pending = one<{ number: number }>("SELECT number FROM revisions WHERE vm = ? AND state = 'pending'", vm)
        if (pending !== undefined) {
          throw new AdapterError('VM_BUSY', `VM "${vm}" has revision r${pending.number} pending: wait for it to finish`, { details: { vm } })
        }
        run("UPDATE revisions SET state = 'retiring' WHERE vm = ?", vm)
        return all<RevisionRow>('SELECT * FROM revisions WHERE vm = ? ORDER BY number', vm).map(toRevision)
      })
    },

    removeRevision (id) {
      transaction(() => {
        const row = one<{ vm: string }>('SELECT vm FROM revisions WHERE id = ?', id)
        if (row === undefined) return
        run('DELETE FROM revisions WHERE id = ?', id)
        const left = one<{ n: number }>('SELECT count(*) AS n FROM revisions WHERE vm = ?', row.vm)
        if (left?.n === 0) run('DELETE FROM vms WHERE name = ?', row.vm)
      })
    },

    removeEmptyVms () {
      return transaction(() => {
        const names = all<{ name: string }>('SELECT name FROM vms WHERE name NOT IN (SELECT vm FROM revisions)').map((r) => r.name)
        for (const name of names) run('DELETE FROM vms WHERE name = ?', name)
        return names
      })
    },

    routesFileHash: () => one<{ value: string }>('SELECT value FROM meta WHERE key = ?', ROUTES_HASH_KEY)?.value,

    setRoutesFileHash (hash) {
      run('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value', ROUTES_HASH_KEY, hash)
    },

    adoptVms (definitions, place, routesHash) {
      return transaction(() => {
        const exists = definitions.filter((d) => vmRow(d.name) !== undefined).map((d) => d.name)
        if (exists.length > 0) {
          throw new AdapterError('VM_EXISTS', `${exists.map((n) => `a VM named "${n}"`).join(', ')} already exist${exists.length === 1 ? 's' : ''}`, { details: { vms: exists } })
        }
        const found = definitions.flatMap((d) => conflicts(claimedDomains(d), d.name))
        if (found.length > 0) {
          const text = found.map((c) => `${c.domain} is already claimed by VM "${c.owner}"`).join('; ')
          throw new AdapterError('DOMAIN_CONFLICT', text, { details: { conflicts: found } })
        }
        const revisions: Revision[] = []
        const at = now().toISOString()
        for (const definition of definitions) {
          const taken: Taken = {
            ips: new Set(all<{ ip: string }>('SELECT ip FROM revisions WHERE ip IS NOT NULL').map((r) => r.ip)),
            macs: new Set(all<{ mac: string }>('SELECT mac FROM revisions WHERE mac IS NOT NULL').map((r) => r.mac))
          }
          const placement = place(definition, taken)
          run('INSERT INTO vms (name, locked, created_at, next_number) VALUES (?, 0, ?, 1)', definition.name, at)
          const result = db.prepare(`INSERT INTO revisions (vm, number, state, definition, address, ip, mac, handle, created_at)
            VALUES (?, 0, 'active', ?, ?, ?, ?, ?, ?)`).run(
            definition.name, JSON.stringify(definition), placement.address, placement.ip ?? null, placement.mac ?? null, placement.handle, at)
          const id = Number(result.lastInsertRowid)
          for (const domain of claimedDomains(definition)) run('INSERT INTO claims (domain, vm, revision_id) VALUES (?, ?, ?)', domain, definition.name, id)
          revisions.push(toRevision(one<RevisionRow>('SELECT * FROM revisions WHERE id = ?', id) as RevisionRow))
        }
        run('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value', ROUTES_HASH_KEY, routesHash)
        return revisions
      })
    },

    setLocked (vm, locked) {
      transaction(() => {
        requireVm(vm)
        run('UPDATE vms SET locked = ? WHERE name = ?', locked ? 1 : 0, vm)
      })
      return get(vm) as Vm
    },

    close: () => { db.close() }
  }
}
