/**
 * @module test/torture/run
 * `npm run torture`: the long versions of issue 9's attacks, each against a fresh
 * vmfront proxy and VM on loopback, while a normal client requests the same VM every
 * 50 ms. Measures the proxy before and after (fds, connections to the VM, RSS),
 * prints a Markdown table and writes it, with JSON, to test/torture/results/.
 * Exits 1 when any attack fails its verdict (see verdict.ts), 2 on bad flags.
 */
import { execFileSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { ATTACKS } from './attacks/index.ts'
import { killChildren } from './ipc.ts'
import { startNormalClient } from './normal-client.ts'
import { json, markdown, type Row, type RunInfo } from './report.ts'
import { createTeardowns, settle, startStand, TIMEOUTS } from './stand.ts'
import type { AttackContext, AttackOutcome, TortureAttack } from './types.ts'
import { judge } from './verdict.ts'

const REPO = resolve(import.meta.dirname, '../..')

const HELP = `usage: npm run torture -- [options]
  --only a,b          run only these attacks
  --quick             short versions of every attack (about 2-3 minutes in all)
  --soak-minutes N    length of the soak (default 10)
  --max-p99 MS        a normal-client p99 above this fails the row (default 2000)
  --seed N            seed of the route fuzzer (default 9)
  --out FILE          the Markdown report (default test/torture/results/latest.md; JSON beside it)
attacks:
${ATTACKS.map((a) => `  ${a.name.padEnd(18)} ${a.summary}`).join('\n')}`

function usage (message: string): never {
  process.stderr.write(`torture: ${message}\n${HELP}\n`)
  process.exit(2)
}

function parseFlags () {
  let values
  try {
    values = parseArgs({
      options: {
        only: { type: 'string' },
        quick: { type: 'boolean', default: false },
        'soak-minutes': { type: 'string', default: '10' },
        'max-p99': { type: 'string', default: '2000' },
        seed: { type: 'string', default: '9' },
        out: { type: 'string', default: join(REPO, 'test/torture/results/latest.md') },
        help: { type: 'boolean', default: false }
      }
    }).values
  } catch (err) {
    usage((err as Error).message)
  }
  if (values.help) { process.stdout.write(HELP + '\n'); process.exit(0) }
  const soakMinutes = Number(values['soak-minutes'])
  if (!Number.isFinite(soakMinutes) || soakMinutes <= 0 || soakMinutes > 24 * 60) usage('--soak-minutes takes a number of minutes, more than 0 and at most 1440')
  const maxP99Ms = Number(values['max-p99'])
  if (!Number.isFinite(maxP99Ms) || maxP99Ms <= 0) usage('--max-p99 takes milliseconds, more than 0')
  const seed = Number(values.seed)
  if (!Number.isInteger(seed) || seed < 0) usage('--seed takes a whole number')
  const only = values.only?.split(',').map((n) => n.trim()).filter(Boolean)
  const unknown = only?.filter((n) => !ATTACKS.some((a) => a.name === n)) ?? []
  if (unknown.length > 0) usage(`unknown attack(s): ${unknown.join(', ')}`)
  if (!values.out.endsWith('.md')) usage('--out must name a .md file (the JSON goes beside it)')
  return { quick: values.quick, soakMinutes, maxP99Ms, seed, only, out: resolve(values.out) }
}

const say = (line: string): void => { process.stderr.write(line + '\n') }

function commit (): string {
  try {
    return execFileSync('git', ['describe', '--always', '--dirty'], { cwd: REPO, encoding: 'utf8' }).trim()
  } catch {
    return 'unknown'
  }
}

/** How long an attack may run before it counts as hung (the soak gets its minutes on top). */
function attackLimitMs (attack: TortureAttack, opts: ReturnType<typeof parseFlags>): number {
  return (attack.name === 'soak' ? (opts.quick ? 0.5 : opts.soakMinutes) * 60_000 : 0) + 10 * 60_000
}

async function runAttack (attack: TortureAttack, opts: ReturnType<typeof parseFlags>, settleBudgetMs: number): Promise<Row> {
  const started = Date.now()
  const seconds = (): number => Math.round((Date.now() - started) / 1000)
  const base = { name: attack.name, summary: attack.summary }
  const missing = attack.unavailable?.()
  if (missing !== undefined) return { ...base, status: 'SKIP', reason: missing, durationS: 0 }
  const t = createTeardowns()
  try {
    const stand = await startStand(t)
    const before = await stand.sample({ gc: true })
    const ctx: AttackContext = { stand, quick: opts.quick, soakMinutes: opts.soakMinutes, seed: opts.seed, timeouts: TIMEOUTS, say }
    const normal = await startNormalClient({ port: stand.ports.http, host: stand.host, timeoutMs: TIMEOUTS.upstreamResponse, accepts: attack.normalAccepts })
    let outcome: AttackOutcome
    let timer: NodeJS.Timeout | undefined
    try {
      const limit = attackLimitMs(attack, opts)
      outcome = await Promise.race([
        attack.run(ctx),
        new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new Error(`did not finish within ${limit / 60_000} minutes`)) }, limit) })
      ])
    } catch (err) {
      // The attack could not go on: against a proxy under attack that is a finding, not a harness bug.
      outcome = { stats: {}, problems: [`the attack stopped early: ${(err as Error).message}`] }
    } finally {
      clearTimeout(timer)
    }
    const normalStats = await normal.stop()
    if (outcome.skipped !== undefined) return { ...base, status: 'SKIP', reason: outcome.skipped, durationS: seconds() }
    const alive = stand.proxy.child.exitCode === null && stand.proxy.child.signalCode === null
    say(`  attack done; settling (up to ${settleBudgetMs / 1000} s)`)
    const settled = alive ? await settle(stand, before, settleBudgetMs) : { sample: before, settled: false, ms: 0 }
    const stopped = await stand.stop()
    const verdict = judge({ alive, exit: alive ? stopped.exit : await stand.proxy.exited, normal: normalStats, before, after: settled.sample, settled: settled.settled, outcome }, { maxP99Ms: opts.maxP99Ms })
    return { ...base, status: verdict.pass ? 'PASS' : 'FAIL', durationS: seconds(), normal: normalStats, before, after: settled.sample, settleMs: settled.ms, verdict, outcome }
  } catch (err) {
    return { ...base, status: 'ERROR', reason: (err as Error).message.split('\n')[0].slice(0, 300), durationS: seconds() }
  } finally {
    await t.run()
  }
}

async function main (): Promise<void> {
  const opts = parseFlags()
  process.on('exit', killChildren)
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => { say(`\ntorture: ${signal}, stopping`); process.exit(130) })
  }
  // Back to rest once the attack stops: 30 s (10 s quick) plus the longest proxy timeout involved.
  const settleBudgetMs = (opts.quick ? 10_000 : 30_000) + Math.max(TIMEOUTS.upstreamResponse, TIMEOUTS.upstreamIdle, TIMEOUTS.clientIdle, TIMEOUTS.websocketIdle)
  const attacks = ATTACKS.filter((a) => opts.only === undefined || opts.only.includes(a.name))
  const rows: Row[] = []
  for (const attack of attacks) {
    say(`torture: ${attack.name}${opts.quick ? ' (quick)' : ''}: ${attack.summary}`)
    const row = await runAttack(attack, opts, settleBudgetMs)
    say(`  ${row.status} in ${row.durationS} s${row.reason !== undefined ? `: ${row.reason}` : ''}${(row.verdict?.reasons.length ?? 0) > 0 ? `: ${row.verdict?.reasons.join('; ').slice(0, 500)}` : ''}`)
    rows.push(row)
  }
  const info: RunInfo = {
    date: new Date().toISOString(),
    node: process.version,
    commit: commit(),
    mode: opts.quick ? 'quick' : `full, soak ${opts.soakMinutes} min`,
    seed: opts.seed,
    maxP99Ms: opts.maxP99Ms,
    settleBudgetS: settleBudgetMs / 1000
  }
  const text = markdown(rows, info)
  process.stdout.write(text)
  mkdirSync(dirname(opts.out), { recursive: true })
  writeFileSync(opts.out, text)
  const jsonFile = opts.out.replace(/\.md$/, '.json')
  writeFileSync(jsonFile, json(rows, info))
  say(`torture: wrote ${relative(process.cwd(), opts.out)} and ${relative(process.cwd(), jsonFile)}`)
  process.exitCode = rows.some((r) => r.status === 'FAIL' || r.status === 'ERROR') ? 1 : 0
}

await main()
