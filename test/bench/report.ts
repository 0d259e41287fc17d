/**
 * @module test/bench/report
 * Turns per-round wrk results into medians, ratios against the baselines of issue 2,
 * the TCP forwarding transfers into their row (issue 11), a Markdown report, and the
 * JSON of `--json`.
 */
import type { TcpOutcome, Transfer } from './tcp-forward.ts'
import type { WrkResult } from './wrk.ts'

export interface TargetOutcome {
  name: string
  status: 'ok' | 'failed' | 'skipped'
  /** Why it failed or was skipped. */
  reason?: string
  rounds: WrkResult[]
  /** What the target's own check saw after the warm-up (vmfront: metrics, access log). */
  note?: string
}

/** How the HTTP targets were measured (absent when none ran). */
export interface HttpInfo {
  backend: string
  load: string
}

export interface RunInfo {
  date: string
  node: string
  commit: string
  cpu: string
  http?: HttpInfo
}

export interface Summary {
  name: string
  rps: number
  p50: number
  p99: number
  errors: number
  roundsRps: number[]
}

export function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/** Medians over the rounds of every target that ran. */
export function summarize (outcomes: TargetOutcome[]): Summary[] {
  return outcomes.filter((o) => o.rounds.length > 0).map((o) => ({
    name: o.name,
    rps: median(o.rounds.map((r) => r.rps)),
    p50: median(o.rounds.map((r) => r.p50)),
    p99: median(o.rounds.map((r) => r.p99)),
    errors: o.rounds.reduce((sum, r) => sum + r.errors, 0),
    roundsRps: o.rounds.map((r) => r.rps)
  }))
}

export interface Ratio {
  label: string
  /** Ratio of the median req/s. */
  value: number
  /** The same ratio round by round (the two targets ran close together in each round). */
  perRound: number[]
  goal?: string
  pass?: boolean
}

/** The comparisons issues 2 and 4 ask for, when both sides ran. */
export function ratios (summaries: Summary[]): Ratio[] {
  const out: Ratio[] = []
  const add = (a: string, b: string, goal?: string, test?: (v: number) => boolean): void => {
    const x = summaries.find((s) => s.name === a)
    const y = summaries.find((s) => s.name === b)
    if (x === undefined || y === undefined || y.rps === 0) return
    const value = x.rps / y.rps
    const perRound = x.roundsRps.length === y.roundsRps.length ? x.roundsRps.map((rps, i) => rps / y.roundsRps[i]) : []
    out.push({ label: `${a} / ${b}`, value, perRound, goal, pass: test?.(value) })
  }
  add('vmfront', 'minimal-undici', '≥ 1.00, issue 10 (≥ 0.80, issue 2)', (v) => v >= 1)
  add('vmfront', 'minimal-http-proxy-3', '> 1.00, issue 2', (v) => v > 1)
  // Both on one core (Caddy with GOMAXPROCS=1): per core, as issue 10 compares them.
  add('vmfront', 'caddy', '≥ 1.00 per core, issue 10', (v) => v >= 1)
  add('vmfront-chain', 'vmfront', 'the chain\'s cost, issue 4')
  return out
}

const int = (n: number): string => Math.round(n).toLocaleString('en-US')
const ms = (n: number): string => n < 10 ? n.toFixed(2) : n.toFixed(1)

/** The TCP forwarding figures: medians of each path, their ratio, the peaks. */
export interface TcpSummary {
  throughMiBs: number
  directMiBs: number
  ratio: number
  /** through / direct round by round (the two ran back to back). */
  perRound: number[]
  pass: boolean
  /** The highest peak RSS of vmfront over the measured transfers, MiB. */
  proxyPeakRssMiB?: number
  /**
   * vmfront's CPU time per GiB forwarded (median): its cost per byte, which other
   * processes on the machine do not change the way they change MiB/s.
   */
  proxyCpuSecondsPerGiB?: number
  /** Median CPU share of one core per process, through vmfront and direct. */
  cpuThrough: Transfer['cpu']
  cpuDirect: Transfer['cpu']
  /** Median share of a core other processes used during the through / direct transfers. */
  othersThrough: number
  othersDirect: number
}

/** The issue 11 goal for through / direct. */
const TCP_GOAL = 0.8

function medianCpu (transfers: Transfer[]): Transfer['cpu'] {
  const proxies = transfers.flatMap((t) => t.cpu.proxy === undefined ? [] : [t.cpu.proxy])
  return {
    sender: median(transfers.map((t) => t.cpu.sender)),
    sink: median(transfers.map((t) => t.cpu.sink)),
    ...(proxies.length === 0 ? {} : { proxy: median(proxies) })
  }
}

export function summarizeTcp (tcp: TcpOutcome): TcpSummary | undefined {
  if (tcp.through.length === 0 || tcp.direct.length === 0) return undefined
  const throughMiBs = median(tcp.through.map((t) => t.mibPerSec))
  const directMiBs = median(tcp.direct.map((t) => t.mibPerSec))
  const peaks = tcp.through.flatMap((t) => t.proxyPeakRssMiB === undefined ? [] : [t.proxyPeakRssMiB])
  const perGiB = tcp.through.flatMap((t) => t.cpu.proxy === undefined ? [] : [t.cpu.proxy * t.seconds / (tcp.mib / 1024)])
  return {
    throughMiBs,
    directMiBs,
    ratio: throughMiBs / directMiBs,
    perRound: tcp.through.length === tcp.direct.length ? tcp.through.map((t, i) => t.mibPerSec / tcp.direct[i].mibPerSec) : [],
    pass: throughMiBs / directMiBs >= TCP_GOAL,
    ...(peaks.length === 0 ? {} : { proxyPeakRssMiB: Math.max(...peaks) }),
    ...(perGiB.length === 0 ? {} : { proxyCpuSecondsPerGiB: median(perGiB) }),
    cpuThrough: medianCpu(tcp.through),
    cpuDirect: medianCpu(tcp.direct),
    othersThrough: median(tcp.through.map((t) => t.others)),
    othersDirect: median(tcp.direct.map((t) => t.others))
  }
}

const pct = (share: number | undefined): string => share === undefined ? '-' : `${Math.round(share * 100)}%`

function tcpLines (tcp: TcpOutcome): string[] {
  const lines = [
    '',
    '## TCP forwarding',
    '',
    `- transfer: ${tcp.mib} MiB on one connection, sender → sink direct and sender → vmfront (port file forward) → sink, ` +
      `${Math.max(tcp.through.length, tcp.direct.length)} interleaved rounds after a warm-up; the same sender and sink programs both ways ` +
      `(test/bench/tcp-load.ts); ${tcp.pinned ? 'sender and sink on core 0, vmfront on core 1 (taskset)' : 'not pinned (one core)'}`
  ]
  if (tcp.status === 'failed') return [...lines, `- failed: ${firstLine(tcp.reason)}`]
  const s = summarizeTcp(tcp)
  if (s === undefined) return [...lines, '- no transfer completed']
  const rounds = (ts: Transfer[]): string => ts.map((t) => int(t.mibPerSec)).join(' / ')
  const rss = s.proxyPeakRssMiB === undefined ? '-' : `${int(s.proxyPeakRssMiB)} MiB`
  lines.push(
    '',
    '| transfer | through vmfront MiB/s (median) | direct MiB/s (median) | ratio | vmfront peak RSS | vmfront CPU s/GiB | through per round | direct per round |',
    '| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |',
    `| ${tcp.mib} MiB | ${int(s.throughMiBs)} | ${int(s.directMiBs)} | ${s.ratio.toFixed(2)}x | ${rss} | ${s.proxyCpuSecondsPerGiB?.toFixed(2) ?? '-'} | ${rounds(tcp.through)} | ${rounds(tcp.direct)} |`,
    '',
    `- through vmfront / direct: **${s.ratio.toFixed(2)}** (goal ≥ ${TCP_GOAL.toFixed(2)}, issue 11) — ${s.pass ? 'pass' : 'FAIL'}` +
      (s.perRound.length > 1 ? `; per round ${s.perRound.map((v) => v.toFixed(2)).join(' / ')}` : ''),
    `- CPU, share of one core during the transfer (median): through vmfront: sender ${pct(s.cpuThrough.sender)}, ` +
      `vmfront ${pct(s.cpuThrough.proxy)}, sink ${pct(s.cpuThrough.sink)}, other processes ${pct(s.othersThrough)}; ` +
      `direct: sender ${pct(s.cpuDirect.sender)}, sink ${pct(s.cpuDirect.sink)}, other processes ${pct(s.othersDirect)}`
  )
  const busiest = Math.max(...tcp.through.map((t) => t.others), ...tcp.direct.map((t) => t.others))
  if (busiest > 0.1) {
    lines.push(`- other processes used up to ${pct(busiest)} of a core during a transfer: through vmfront needs both cores and direct one, ` +
      'so such load lowers the ratio; vmfront CPU s/GiB is the figure it does not change much')
  }
  return lines
}

/** The Markdown report: run facts, the HTTP table, its ratios, failures and notes, then TCP forwarding. */
export function markdown (info: RunInfo, outcomes: TargetOutcome[], tcp?: TcpOutcome): string {
  const lines = [
    `# vmfront benchmark`,
    '',
    `- date: ${info.date}`,
    `- node: ${info.node}, commit: ${info.commit}`,
    `- machine: ${info.cpu}`
  ]
  if (info.http !== undefined) lines.push(...httpLines(info.http, outcomes))
  if (tcp !== undefined) lines.push(...tcpLines(tcp))
  return lines.join('\n') + '\n'
}

function httpLines (http: HttpInfo, outcomes: TargetOutcome[]): string[] {
  const summaries = summarize(outcomes)
  const undici = summaries.find((s) => s.name === 'minimal-undici')?.rps
  const lines = [
    '',
    '## HTTP',
    '',
    `- backend: ${http.backend}`,
    `- load: ${http.load}`,
    '',
    '| target | req/s (median) | p50 ms | p99 ms | errors | vs minimal-undici | req/s per round |',
    '| --- | ---: | ---: | ---: | ---: | ---: | --- |'
  ]
  for (const s of summaries) {
    const vs = undici === undefined ? '' : `${(s.rps / undici).toFixed(2)}x`
    lines.push(`| ${s.name} | ${int(s.rps)} | ${ms(s.p50)} | ${ms(s.p99)} | ${s.errors} | ${vs} | ${s.roundsRps.map(int).join(' / ')} |`)
  }
  const rs = ratios(summaries)
  if (rs.length > 0) lines.push('')
  for (const r of rs) {
    const verdict = r.pass === undefined ? '' : r.pass ? ' — pass' : ' — FAIL'
    const rounds = r.perRound.length > 1 ? `; per round ${r.perRound.map((v) => v.toFixed(2)).join(' / ')}` : ''
    lines.push(`- ${r.label}: **${r.value.toFixed(2)}**${r.goal === undefined ? '' : ` (goal ${r.goal})`}${verdict}${rounds}`)
  }
  const vmfront = summaries.find((s) => s.name === 'vmfront')
  const caddy = summaries.find((s) => s.name === 'caddy')
  if (vmfront !== undefined && caddy !== undefined) lines.push(`- vmfront p99 / caddy p99: ${ms(vmfront.p99)} / ${ms(caddy.p99)} ms (goal ≤, issue 10) — ${vmfront.p99 <= caddy.p99 ? 'pass' : 'FAIL'}`)
  const notRun = outcomes.filter((o) => o.status !== 'ok' || o.note !== undefined)
  if (notRun.length > 0) lines.push('')
  for (const o of notRun) {
    const text = o.status === 'ok' ? o.note : `${o.status}: ${firstLine(o.reason)}`
    lines.push(`- ${o.name}: ${text}`)
  }
  return lines
}

function firstLine (text: string | undefined): string {
  const line = (text ?? '').split('\n')[0]
  return line.length > 200 ? line.slice(0, 200) + '…' : line
}

/** The `--json` document: run facts, per-target rounds and medians, ratios, TCP forwarding. */
export function json (info: RunInfo, outcomes: TargetOutcome[], tcp?: TcpOutcome): string {
  const summaries = summarize(outcomes)
  return JSON.stringify({
    ...info,
    targets: outcomes.map((o) => ({ ...o, summary: summaries.find((s) => s.name === o.name) })),
    ratios: ratios(summaries),
    ...(tcp === undefined ? {} : { tcp: { ...tcp, summary: summarizeTcp(tcp) } })
  }, null, 2) + '\n'
}
