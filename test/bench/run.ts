/**
 * @module test/bench/run
 * `npm run bench`: vmfront against minimal Node proxies, nginx, HAProxy, Caddy and a
 * bare Node server, all in front of one backend on loopback, measured with wrk in
 * interleaved rounds so machine noise hits every target alike; then TCP forwarding,
 * a 1 GiB transfer through vmfront and direct (tcp-forward.ts). Prints a Markdown
 * report and writes it to test/bench/results/latest.md.
 */
import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, release, tmpdir } from 'node:os'
import { join, relative, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { allAlive, canPin, killAll, killChildrenOnExit } from './proc.ts'
import type { Proc } from './proc.ts'
import { json, markdown } from './report.ts'
import type { HttpInfo, RunInfo, TargetOutcome } from './report.ts'
import { runTcpForwardBench } from './tcp-forward.ts'
import type { TcpOutcome } from './tcp-forward.ts'
import { findBin, startBackend, TARGETS } from './targets.ts'
import type { BenchContext, Running } from './targets.ts'
import { runWrk } from './wrk.ts'

/** The `--only` name of the TCP forwarding measurement. */
const TCP = 'tcp'

const HELP = `usage: npm run bench -- [options]
  --duration 5s      length of each measured wrk run
  --warmup 2s        wrk warm-up per target before the rounds ("0s": none)
  --rounds 3         interleaved rounds (HTTP and TCP); the tables show medians
  --connections 64   wrk connections (one wrk thread)
  --tcp-mib 1024     size of each TCP forwarding transfer, MiB
  --only a,b         run only these (${[...TARGETS.map((t) => t.name), TCP].join(', ')}; ${TCP} = TCP forwarding)
  --json             print JSON instead of the Markdown table
  --out FILE         where to write the Markdown (default test/bench/results/latest.md)
  --keep             keep the temp dir with configs and logs`

const REPO = resolve(import.meta.dirname, '../..')

function usage (message: string): never {
  process.stderr.write(`bench: ${message}\n${HELP}\n`)
  process.exit(2)
}

function seconds (text: string, flag: string): number {
  const match = /^(\d+)(s|m)?$/.exec(text)
  if (match === null) usage(`${flag} takes whole seconds such as "5s" or "1m", not "${text}"`)
  return Number(match[1]) * (match[2] === 'm' ? 60 : 1)
}

function parseFlags () {
  let parsed
  try {
    parsed = parseArgs({
      options: {
        duration: { type: 'string', default: '5s' },
        warmup: { type: 'string', default: '2s' },
        rounds: { type: 'string', default: '3' },
        connections: { type: 'string', default: '64' },
        'tcp-mib': { type: 'string', default: '1024' },
        only: { type: 'string' },
        json: { type: 'boolean', default: false },
        out: { type: 'string', default: join(REPO, 'test/bench/results/latest.md') },
        keep: { type: 'boolean', default: false },
        help: { type: 'boolean', default: false }
      }
    }).values
  } catch (err) {
    usage((err as Error).message)
  }
  if (parsed.help) { process.stdout.write(HELP + '\n'); process.exit(0) }
  const rounds = Number(parsed.rounds)
  const connections = Number(parsed.connections)
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 20) usage('--rounds takes 1 to 20')
  if (!Number.isInteger(connections) || connections < 1 || connections > 10_000) usage('--connections takes 1 to 10000')
  const tcpMib = Number(parsed['tcp-mib'])
  if (!Number.isInteger(tcpMib) || tcpMib < 1 || tcpMib > 65_536) usage('--tcp-mib takes 1 to 65536')
  const only = parsed.only?.split(',').map((name) => name.trim()).filter(Boolean)
  const unknown = only?.filter((name) => name !== TCP && !TARGETS.some((t) => t.name === name)) ?? []
  if (unknown.length > 0) usage(`unknown target(s): ${unknown.join(', ')}`)
  const duration = seconds(parsed.duration, '--duration')
  if (duration < 1) usage('--duration must be at least 1s')
  return { ...parsed, duration, warmup: seconds(parsed.warmup, '--warmup'), rounds, connections, tcpMib, only }
}

type Flags = ReturnType<typeof parseFlags>

const say = (line: string): void => { process.stderr.write(line + '\n') }

function describeCommit (): string {
  try {
    return execFileSync('git', ['describe', '--always', '--dirty'], { cwd: REPO, encoding: 'utf8' }).trim()
  } catch {
    return 'unknown'
  }
}

/** The wrk part: every selected HTTP target in interleaved rounds. */
async function runHttp (flags: Flags, root: string, selected: typeof TARGETS): Promise<{ info: HttpInfo, outcomes: TargetOutcome[] }> {
  if (findBin('wrk') === undefined) usage('wrk is not installed (Debian: apt-get install wrk)')
  const running = new Map<string, Running>()
  const outcomes = new Map<string, TargetOutcome>()
  let backendProc: Proc | undefined
  try {
    const backend = await startBackend(root, process.execPath, REPO)
    backendProc = backend.proc
    say(`backend: ${backend.kind} on 127.0.0.1:${backend.port}`)
    const ctx: BenchContext = { root, repo: REPO, node: process.execPath, backendPort: backend.port }

    for (const target of selected) {
      const outcome: TargetOutcome = { name: target.name, status: 'ok', rounds: [] }
      outcomes.set(target.name, outcome)
      const missing = target.missing?.(ctx)
      if (missing !== undefined) {
        Object.assign(outcome, { status: target.optional === undefined ? 'failed' : 'skipped', reason: missing })
        say(`${target.name}: ${outcome.status}, ${missing}`)
        continue
      }
      try {
        running.set(target.name, await target.start(ctx))
        say(`${target.name}: up`)
      } catch (err) {
        // The chain comes after the proxy (issue 4): until then, not coming up is a skip.
        Object.assign(outcome, { status: target.optional === 'always' ? 'skipped' : 'failed', reason: `did not come up: ${(err as Error).message}` })
        say(`${target.name}: ${outcome.status}, ${outcome.reason}`)
      }
    }
    if (running.size === 0) throw new Error('no target came up')

    const load = { durationSec: flags.duration, connections: flags.connections, threads: 1 }
    const fail = async (name: string, reason: string): Promise<void> => {
      Object.assign(outcomes.get(name)!, { status: 'failed', reason })
      say(`${name}: failed, ${reason}`)
      await Promise.all(running.get(name)!.procs.map((proc) => proc.stop()))
      running.delete(name)
    }

    if (flags.warmup > 0) {
      for (const [name, target] of [...running]) {
        try {
          await runWrk({ ...load, url: target.url, host: target.host, durationSec: flags.warmup })
          if (target.check !== undefined) {
            outcomes.get(name)!.note = await target.check()
            say(`${name}: ${outcomes.get(name)!.note}`)
          }
        } catch (err) {
          await fail(name, `warm-up: ${(err as Error).message}`)
        }
      }
    }

    for (let round = 0; round < flags.rounds; round++) {
      // Rotate the order each round so no target always runs first or last.
      const names = [...running.keys()]
      const order = [...names.slice(round % names.length), ...names.slice(0, round % names.length)]
      for (const name of order) {
        const target = running.get(name)!
        if (!allAlive(target.procs)) { await fail(name, `exited before round ${round + 1}`); continue }
        try {
          const result = await runWrk({ ...load, url: target.url, host: target.host })
          outcomes.get(name)!.rounds.push(result)
          say(`round ${round + 1}/${flags.rounds} ${name}: ${Math.round(result.rps)} req/s, p50 ${result.p50} ms, p99 ${result.p99} ms, ${result.errors} errors`)
        } catch (err) {
          await fail(name, `round ${round + 1}: ${(err as Error).message}`)
        }
      }
    }

    const info: HttpInfo = {
      backend: `${backend.kind}, 3-byte body, keep-alive`,
      load: `wrk -t1 -c${flags.connections} -d${flags.duration}s --latency, HTTP/1.1 keep-alive, ` +
        `${flags.rounds} interleaved rounds after a ${flags.warmup}s warm-up; ` +
        (canPin ? 'wrk on core 0, each target on core 1 (taskset)' : 'not pinned (one core)')
    }
    return { info, outcomes: TARGETS.map((t) => outcomes.get(t.name)).filter((o) => o !== undefined) }
  } finally {
    await Promise.all([...running.values()].flatMap((r) => r.procs.map((proc) => proc.stop())))
    await backendProc?.stop()
  }
}

async function main (): Promise<void> {
  const flags = parseFlags()
  const loadAtStart = loadavg()[0]
  const selected = TARGETS.filter((t) => flags.only === undefined || flags.only.includes(t.name))
  const withTcp = flags.only === undefined || flags.only.includes(TCP)
  const root = mkdtempSync(join(tmpdir(), 'vmfront-bench-'))
  const removeRoot = (): void => { if (!flags.keep) rmSync(root, { recursive: true, force: true }) }
  killChildrenOnExit(removeRoot)
  try {
    const http = selected.length > 0 ? await runHttp(flags, root, selected) : undefined
    let tcp: TcpOutcome | undefined
    if (withTcp) {
      say(`tcp: ${flags.tcpMib} MiB per transfer, ${flags.rounds} rounds`)
      tcp = await runTcpForwardBench({ root, repo: REPO, node: process.execPath, mib: flags.tcpMib, rounds: flags.rounds, say })
    }
    const info: RunInfo = {
      date: new Date().toISOString(),
      node: process.version,
      commit: describeCommit(),
      cpu: `${cpus()[0]?.model ?? 'unknown'}, ${cpus().length} cores, Linux ${release()}; ` +
        `load average ${loadAtStart.toFixed(2)} at start, ${loadavg()[0].toFixed(2)} at end` +
        (loadAtStart > 0.5 ? ' (something else was running: expect noise)' : ''),
      http: http?.info
    }
    const outcomes = http?.outcomes ?? []
    const report = markdown(info, outcomes, tcp)
    mkdirSync(resolve(flags.out, '..'), { recursive: true })
    writeFileSync(flags.out, report)
    process.stdout.write(flags.json ? json(info, outcomes, tcp) : '\n' + report)
    say(`written to ${relative(process.cwd(), flags.out)}`)
  } finally {
    killAll()
    if (flags.keep) say(`configs and logs kept in ${root}`)
    removeRoot()
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`)
  process.exitCode = 1
})
