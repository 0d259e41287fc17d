/**
 * @module certs/memory-storage
 * An in-memory Storage (tests, and embedders that persist nothing). Same contract as file storage.
 */
import type { Storage } from './storage.ts'

/** Creates an empty in-memory Storage; `entries` exposes its content for inspection. */
export function createMemoryStorage (): Storage & { readonly entries: Map<string, Buffer> } {
  const entries = new Map<string, Buffer>()
  return {
    entries,
    async load (key) {
      const v = entries.get(key)
      return v === undefined ? undefined : Buffer.from(v)
    },
    async store (key, data) {
      entries.set(key, Buffer.from(data))
    },
    async delete (key) {
      entries.delete(key)
    },
    async list (prefix) {
      const names = new Set<string>()
      const p = prefix.endsWith('/') ? prefix : prefix + '/'
      for (const key of entries.keys()) {
        if (key.startsWith(p)) names.add(key.slice(p.length).split('/')[0])
      }
      return [...names].sort()
    }
  }
}
