/**
 * @module test/torture/types
 * The small interface between `npm run torture` and its attacks. An attack gets a
 * fresh proxy and VM (the "stand"), runs for a bounded count and time, and returns
 * its own numbers and findings; the runner measures everything else (the normal
 * client's latencies, fds, upstream sockets, RSS) around it.
 *
 * An attack written elsewhere (test/adversarial/<area>-attacks.ts) plugs in by
 * wrapping its function: `{ name, summary, run: async (ctx) => ({ stats: await
 * fn({ port: ctx.stand.ports.http, host: ctx.stand.host, ... }), problems: [] }) }`.
 */
import type { ProxyProcess } from '../helpers/proxy-process.ts'

/** One measurement of the proxy process. */
export interface Sample {
  /** Resident set size, KiB (/proc/PID/status VmRSS). */
  rssKiB: number
  /** Open file descriptors (/proc/PID/fd). */
  fds: number
  /**
   * TCP connections to the VM's port in any state but TIME-WAIT (the proxy is the
   * VM's only client): established ones, and half-closed ones the proxy still holds.
   */
  upstream: number
  /** Those of them with unread bytes in their receive queue (paused by the proxy); -1 without ss. */
  upstreamWithUnread: number
  /** The same connections by TCP state (ESTAB, FIN-WAIT-2...); empty without ss. */
  upstreamStates: Record<string, number>
  /** V8 heap in use right after a full GC, KiB (only when sampled with `gc`). */
  heapUsedKiB?: number
  /** Buffers and other memory outside the V8 heap after that GC, KiB. */
  externalKiB?: number
}

/** What the VM process counted since its last reset. */
export interface VmStats {
  requests: number
  /** Requests by the first path segment ("/big", "/rr", "/"). */
  byPath: Record<string, number>
  upgrades: number
  /** Open connections, as the VM's server counts them. */
  connections: number
}

export interface VmControl {
  port: number
  origin: string
  stats (): Promise<VmStats>
  reset (): Promise<void>
}

/** The system under attack: one proxy process in front of one VM process. */
export interface Stand {
  proxy: ProxyProcess
  pid: number
  /** Listener ports: http, https, admin. */
  ports: { http: number, https: number, admin: number }
  vm: VmControl
  /** Routed to the VM with the unlimited `default` profile; the normal client uses it. */
  host: string
  /** Routed to the same VM with the `flood` rate profile (see TORTURE_TOML). */
  limitedHost: string
  /** The route file the stand started with (v1 JSON document). */
  baseRoutes: { version: number, routes: Array<Record<string, unknown>> }
  /** GET /status on the admin listener, parsed. */
  status (): Promise<Record<string, unknown>>
  /** Measures the proxy; with `gc`, forces a full GC in it first (through its inspector) and adds the heap figures. */
  sample (options?: { gc?: boolean }): Promise<Sample>
}

/** The timeouts the torture config gives the proxy, in ms (short, so it settles fast). */
export interface TortureTimeouts {
  connect: number
  upstreamResponse: number
  upstreamIdle: number
  requestHeaders: number
  clientIdle: number
  websocketIdle: number
  keepAlive: number
}

export interface AttackContext {
  stand: Stand
  /** Short versions: a few seconds each, for trying the harness out. */
  quick: boolean
  soakMinutes: number
  /** Seed for anything random (fuzzing), so a finding can be replayed. */
  seed: number
  timeouts: TortureTimeouts
  /** Progress line on stderr. */
  say (line: string): void
}

export interface AttackOutcome {
  /** The attack's own figures (requests sent, resets, streams the VM saw...). */
  stats: Record<string, number | string>
  /** Findings that fail the verdict, besides leaks and latency (the runner checks those). */
  problems: string[]
  /** Remarks for the report that are not failures. */
  notes?: string[]
  /** Set when the attack could not run (a missing tool); the row says why. */
  skipped?: string
}

export interface TortureAttack {
  name: string
  /** One line for `--help` and the report. */
  summary: string
  /** Statuses the normal client may get besides 200 without counting a failure (route fuzzing can drop its route: 404). */
  normalAccepts?: number[]
  /** Why the attack cannot run on this machine, or undefined when it can. */
  unavailable? (): string | undefined
  run (ctx: AttackContext): Promise<AttackOutcome>
}
