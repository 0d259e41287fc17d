/**
 * Chain attacks as plain functions, for the bounded regression tests here and for
 * a torture runner that calls them with bigger numbers. Each takes a Teardown
 * (tap's `t`, or any object with `teardown(fn)`) and cleans up after itself there.
 */
import { readFileSync } from 'node:fs'
import { Agent, request } from 'undici'
import { startParent, PSK } from '../chain/chain-helpers.ts'

interface Teardown { teardown (fn: () => unknown): void }

/** Resident set size of a process, in bytes (Linux /proc). */
export function rssOf (pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m === null ? 0 : Number(m[1]) * 1024
}

export interface RegistrationFloodOptions {
  /** Children to register, each under its own name. */
  children: number
  /** Domains per child. */
  domainsPerChild?: number
  /** Registrations in flight at once. */
  concurrency?: number
  /** Extra `[chain]` keys of the parent (e.g. max_children). */
  chain?: Record<string, string | number>
}

export interface RegistrationFloodResult {
  /** Time for every registration to be answered. */
  ms: number
  /** Answers by HTTP status. */
  statuses: Record<number, number>
  /** The parent's RSS before and after (bytes). */
  rssBefore: number
  rssAfter: number
  /** A sample of refused answers' bodies (first of each status). */
  samples: Record<number, unknown>
  /** The parent process, to inspect further. */
  parent: Awaited<ReturnType<typeof startParent>>
}

/**
 * Registers `children` children with a fresh parent process, `concurrency` at a
 * time, like a fleet of hosts (or one attacker holding the PSK) would.
 */
export async function registrationFlood (t: Teardown, options: RegistrationFloodOptions): Promise<RegistrationFloodResult> {
  const perChild = options.domainsPerChild ?? 2
  const parent = await startParent(t, { chain: { lease_ttl: '10m', ...options.chain } })
  const agent = new Agent({ connections: options.concurrency ?? 8 })
  t.teardown(() => agent.close())
  const pid = parent.child.pid!
  const rssBefore = rssOf(pid)
  const statuses: Record<number, number> = {}
  const samples: Record<number, unknown> = {}
  let next = 0
  const start = performance.now()
  async function worker (): Promise<void> {
    while (next < options.children) {
      const i = next++
      const res = await request(`${parent.api}/register`, {
        dispatcher: agent,
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${PSK}` },
        body: JSON.stringify({
          name: `flood-${i}`,
          child_url: `http://127.0.0.1:${1024 + (i % 50000)}`,
          domains: Array.from({ length: perChild }, (_, d) => ({ domain: `d${d}.c${i}.flood.example.com` }))
        })
      })
      const body = await res.body.json()
      statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1
      if (res.statusCode !== 200 && !(res.statusCode in samples)) samples[res.statusCode] = body
    }
  }
  await Promise.all(Array.from({ length: options.concurrency ?? 8 }, worker))
  const ms = performance.now() - start
  return { ms, statuses, rssBefore, rssAfter: rssOf(pid), samples, parent }
}
