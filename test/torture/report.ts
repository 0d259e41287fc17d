/**
 * @module test/torture/report
 * The torture report: one Markdown row per attack (the table of issue 9), each
 * row's findings and the attack's own figures below it, and the same as JSON.
 */
import type { NormalStats } from './normal-client.ts'
import type { AttackOutcome, Sample } from './types.ts'
import { describeUpstream, RSS_REMARK_KIB, type Verdict } from './verdict.ts'

export interface Row {
  name: string
  summary: string
  /** PASS / FAIL, SKIP (a missing tool) or ERROR (the harness itself failed: a bug to fix here, not in the proxy). */
  status: 'PASS' | 'FAIL' | 'SKIP' | 'ERROR'
  durationS: number
  normal?: NormalStats
  before?: Sample
  after?: Sample
  settleMs?: number
  verdict?: Verdict
  outcome?: AttackOutcome
  /** Why SKIP or ERROR. */
  reason?: string
}

export interface RunInfo {
  date: string
  node: string
  commit: string
  mode: string
  seed: number
  maxP99Ms: number
  settleBudgetS: number
}

const ms = (v: number | undefined): string => (v === undefined ? '–' : v >= 100 ? String(Math.round(v)) : v.toFixed(1))
const mib = (kib: number): string => (kib / 1024).toFixed(0)
/** Heap + external memory after a full GC, KiB. */
const held = (s: Sample): number => (s.heapUsedKiB ?? Number.NaN) + (s.externalKiB ?? Number.NaN)
const cell = (text: string): string => text.replaceAll('|', '\\|').replaceAll('\n', ' ')

function rowLine (r: Row): string {
  if (r.status === 'SKIP' || r.status === 'ERROR') {
    return `| ${r.name} | – | – | – | – | – | – | – | – | ${r.status}: ${cell(r.reason ?? '')} |`
  }
  const n = r.normal
  const v = r.verdict
  const b = r.before
  const a = r.after
  const rss = b !== undefined && a !== undefined ? `${mib(b.rssKiB)} → ${mib(a.rssKiB)} MiB (heap ${mib(held(b))} → ${mib(held(a))})` : '–'
  return `| ${r.name} | ${n?.requests ?? '–'} | ${n?.failures ?? '–'} | ${ms(n?.p50)} | ${ms(n?.p99)} | ${ms(n?.max)} | ${v?.leakedFds ?? '–'} | ${v?.leakedUpstream ?? '–'} | ${rss} | ${r.status} |`
}

/** The report as Markdown: the table, then per attack its findings and figures. */
export function markdown (rows: Row[], info: RunInfo): string {
  const out = [
    `# vmfront torture run (${info.mode})`,
    '',
    `${info.date} · Node ${info.node} · commit ${info.commit} · seed ${info.seed} · normal-client p99 limit ${info.maxP99Ms} ms · settle budget ${info.settleBudgetS} s`,
    '',
    '| attack | requests by normal client | failures | p50 ms | p99 ms | max ms | leaked fds | leaked upstream sockets | RSS before → after (heap after GC) | verdict |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |',
    ...rows.map(rowLine),
    ''
  ]
  for (const r of rows) {
    out.push(`## ${r.name}: ${r.status}`, '', r.summary, '')
    if (r.reason !== undefined) out.push(`- ${r.status === 'SKIP' ? 'skipped' : 'harness error'}: ${r.reason}`)
    for (const reason of r.verdict?.reasons ?? []) out.push(`- **${reason}**`)
    for (const note of r.outcome?.notes ?? []) out.push(`- ${note}`)
    const stats = Object.entries(r.outcome?.stats ?? {})
    if (stats.length > 0) out.push(`- figures: ${stats.map(([k, v]) => `${k} ${v}`).join(', ')}`)
    if (r.before !== undefined && r.after !== undefined) {
      out.push(`- proxy before: ${r.before.fds} fds, ${r.before.upstream} connections to the VM; after ${Math.round((r.settleMs ?? 0) / 1000)} s of settling: ${r.after.fds} fds, ${r.after.upstream} connections to the VM (${describeUpstream(r.after)})`)
      const grown = r.after.rssKiB - r.before.rssKiB
      if (grown > RSS_REMARK_KIB) out.push(`- RSS grew by ${mib(grown)} MiB and stayed there, while the heap after a full GC went ${mib(held(r.before))} → ${mib(held(r.after))} MiB: the allocator keeps the attack's peak`)
    }
    out.push(`- took ${r.durationS} s`, '')
  }
  const failed = rows.filter((r) => r.status === 'FAIL' || r.status === 'ERROR').map((r) => r.name)
  out.push(failed.length === 0 ? 'All attacks passed.' : `Failed: ${failed.join(', ')}.`, '')
  // Findings quote fuzzed input: keep control bytes from turning the report into a binary file.
  // eslint-disable-next-line no-control-regex
  return out.join('\n').replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

export function json (rows: Row[], info: RunInfo): string {
  return JSON.stringify({ ...info, attacks: rows }, null, 2) + '\n'
}
