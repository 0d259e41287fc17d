/**
 * @module test/bench/report
 * Turns per-round wrk results into medians, ratios against the baselines of issue 2,
 * a Markdown table, and the JSON of `--json`.
 */
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

export interface RunInfo {
  date: string
  node: string
  commit: string
  cpu: string
  backend: string
  load: string
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
  add('vmfront', 'minimal-undici', '≥ 0.80, issue 2', (v) => v >= 0.8)
  add('vmfront', 'minimal-http-proxy-3', '> 1.00, issue 2', (v) => v > 1)
  add('vmfront-chain', 'vmfront', 'the chain\'s cost, issue 4')
  return out
}

const int = (n: number): string => Math.round(n).toLocaleString('en-US')
const ms = (n: number): string => n < 10 ? n.toFixed(2) : n.toFixed(1)

/** The Markdown report: run facts, the table, the ratios, failures and notes. */
export function markdown (info: RunInfo, outcomes: TargetOutcome[]): string {
  const summaries = summarize(outcomes)
  const undici = summaries.find((s) => s.name === 'minimal-undici')?.rps
  const lines = [
    `# vmfront benchmark`,
    '',
    `- date: ${info.date}`,
    `- node: ${info.node}, commit: ${info.commit}`,
    `- machine: ${info.cpu}`,
    `- backend: ${info.backend}`,
    `- load: ${info.load}`,
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
  const notRun = outcomes.filter((o) => o.status !== 'ok' || o.note !== undefined)
  if (notRun.length > 0) lines.push('')
  for (const o of notRun) {
    const text = o.status === 'ok' ? o.note : `${o.status}: ${firstLine(o.reason)}`
    lines.push(`- ${o.name}: ${text}`)
  }
  return lines.join('\n') + '\n'
}

function firstLine (text: string | undefined): string {
  const line = (text ?? '').split('\n')[0]
  return line.length > 200 ? line.slice(0, 200) + '…' : line
}

/** The `--json` document: run facts, per-target rounds and medians, ratios. */
export function json (info: RunInfo, outcomes: TargetOutcome[]): string {
  const summaries = summarize(outcomes)
  return JSON.stringify({ ...info, targets: outcomes.map((o) => ({ ...o, summary: summaries.find((s) => s.name === o.name) })), ratios: ratios(summaries) }, null, 2) + '\n'
}
