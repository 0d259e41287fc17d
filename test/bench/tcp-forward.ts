/**
 * @module test/bench/tcp-forward
 * The TCP forwarding row of `npm run bench` (SPEC §11, issue 11): the same 1 GiB
 * transfer from one sender process to one sink process, straight to the sink and
 * through a real `vmfront proxy` forwarding a port from its port file, interleaved
 * round by round. The sender and the sink are the same programs both ways
 * (tcp-load.ts); with two cores they share core 0 and vmfront gets core 1, as wrk
 * and the HTTP targets do, so "direct" is what the load generator can move on its
 * core and the ratio says whether vmfront keeps up with it. The CPU each process
 * used (/proc/PID/stat) is reported, so a reader sees which one was the limit.
 */
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { cpuSeconds, peakRss, resetPeakRss } from '../helpers/proc-stat.ts'
import { canPin, freePort, startProcess, tail } from './proc.ts'
import type { Proc } from './proc.ts'

/** vmfront's core, as for the HTTP targets; the sender and the sink share the other. */
const PROXY_CORE = 1
const LOAD_CORE = 0

export interface TcpBenchOptions {
  /** Temp dir for the configs and logs. */
  root: string
  repo: string
  node: string
  mib: number
  rounds: number
  say: (line: string) => void
}

/** One transfer: its rate and the CPU each process spent, as a share of one core. */
export interface Transfer {
  mibPerSec: number
  seconds: number
  cpu: { sender: number, sink: number, proxy?: number }
  /** What other processes used meanwhile, as a share of one core (machine busy time less ours). */
  others: number
  /** vmfront's peak RSS during this transfer (VmHWM after resetting it), MiB. */
  proxyPeakRssMiB?: number
}

export interface TcpOutcome {
  status: 'ok' | 'failed'
  reason?: string
  mib: number
  pinned: boolean
  direct: Transfer[]
  through: Transfer[]
}

/** Waits (bounded) until `file` holds `text`; fails at once if `proc` exits. */
async function waitForLog (proc: Proc, text: string, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const log = readFileSync(proc.logFile, 'utf8')
    if (log.includes(text)) return log
    if (proc.child.exitCode !== null || proc.child.signalCode !== null) throw new Error(`exited before "${text}":\n${tail(proc.logFile)}`)
    if (Date.now() > deadline) throw new Error(`no "${text}" within ${timeoutMs} ms:\n${tail(proc.logFile)}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** Runs the sender once against `port` (pinned with the sink), returns its JSON. */
interface Sent { seconds: number, cpu_seconds: number, machine_busy_seconds: number }

async function sendOnce (opts: TcpBenchOptions, dir: string, label: string, port: number, bytes: number): Promise<Sent> {
  const proc = startProcess({
    cmd: opts.node,
    args: [join(opts.repo, 'test/bench/tcp-load.ts'), 'send', '--port', String(port), '--bytes', String(bytes)],
    core: LOAD_CORE,
    logFile: join(dir, `send-${label}.log`)
  })
  const code = await new Promise<number | null>((resolve) => proc.child.once('exit', resolve))
  const out = readFileSync(proc.logFile, 'utf8').trim().split('\n').at(-1) ?? ''
  if (code !== 0) throw new Error(`the sender exited with ${code}: ${out}`)
  return JSON.parse(out) as Sent
}

async function transfer (opts: TcpBenchOptions, dir: string, label: string, port: number, sinkPid: number, proxyPid?: number): Promise<Transfer> {
  const bytes = opts.mib * 1024 * 1024
  if (proxyPid !== undefined) resetPeakRss(proxyPid)
  const sink0 = cpuSeconds(sinkPid)
  const proxy0 = proxyPid === undefined ? 0 : cpuSeconds(proxyPid)
  const sent = await sendOnce(opts, dir, label, port, bytes)
  const share = (cpu: number): number => cpu / sent.seconds
  const sink = cpuSeconds(sinkPid) - sink0
  const proxy = proxyPid === undefined ? 0 : cpuSeconds(proxyPid) - proxy0
  return {
    mibPerSec: opts.mib / sent.seconds,
    seconds: sent.seconds,
    cpu: {
      sender: share(sent.cpu_seconds),
      sink: share(sink),
      ...(proxyPid === undefined ? {} : { proxy: share(proxy) })
    },
    // The sink and vmfront idle outside the transfer, so their whole delta is inside it.
    others: Math.max(0, share(sent.machine_busy_seconds - sent.cpu_seconds - sink - proxy)),
    ...(proxyPid === undefined ? {} : { proxyPeakRssMiB: peakRss(proxyPid) / 1048576 })
  }
}

/** Starts the sink and vmfront, then runs the interleaved rounds. Never throws. */
export async function runTcpForwardBench (opts: TcpBenchOptions): Promise<TcpOutcome> {
  const outcome: TcpOutcome = { status: 'ok', mib: opts.mib, pinned: canPin, direct: [], through: [] }
  const dir = join(opts.root, 'tcp-forward')
  mkdirSync(dir, { recursive: true })
  const procs: Proc[] = []
  try {
    const sink = startProcess({ cmd: opts.node, args: [join(opts.repo, 'test/bench/tcp-load.ts'), 'sink'], core: LOAD_CORE, logFile: join(dir, 'sink.log') })
    procs.push(sink)
    const sinkPort = (JSON.parse((await waitForLog(sink, '"port"', 10_000)).trim().split('\n')[0]) as { port: number }).port
    const listenPort = await freePort()
    const portsFile = join(dir, 'ports.db')
    // Mulch's port file, one public forward without a PROXY header.
    writeFileSync(portsFile, JSON.stringify({
      [listenPort]: {
        ListenAddr: { IP: '127.0.0.1', Port: listenPort, Zone: '' },
        Forwards: { '*': { Dest: { IP: '127.0.0.1', Port: sinkPort, Zone: '' }, PROXYProtoPort: 0 } }
      }
    }))
    writeFileSync(join(dir, 'vmfront.toml'), [
      `data_dir = ${JSON.stringify(join(dir, 'data'))}`,
      `routes_file = ${JSON.stringify(join(dir, 'routes.json'))}`,
      `pid_file = ${JSON.stringify(join(dir, 'vmfront.pid'))}`,
      `ports_file = ${JSON.stringify(portsFile)}`,
      '[listen]', `http = "127.0.0.1:${await freePort()}"`, 'https = ""', `admin = "127.0.0.1:${await freePort()}"`,
      ''
    ].join('\n'))
    const proxy = startProcess({
      cmd: opts.node,
      args: [join(opts.repo, 'proxy/cli.ts'), 'proxy', '--config', join(dir, 'vmfront.toml')],
      cwd: opts.repo,
      core: PROXY_CORE,
      logFile: join(dir, 'vmfront.log')
    })
    procs.push(proxy)
    await waitForLog(proxy, 'tcp forward port open', 15_000)
    const sinkPid = sink.child.pid!
    const proxyPid = proxy.child.pid!
    // Warm-up: JIT both paths and grow the sockets' buffers before measuring.
    const warm = { ...opts, mib: Math.min(128, opts.mib) }
    await transfer(warm, dir, 'warm-direct', sinkPort, sinkPid)
    await transfer(warm, dir, 'warm-through', listenPort, sinkPid, proxyPid)
    for (let round = 0; round < opts.rounds; round++) {
      // Alternate the order so neither path always runs first.
      const pair = round % 2 === 0 ? ['direct', 'through'] as const : ['through', 'direct'] as const
      for (const path of pair) {
        const t = path === 'direct'
          ? await transfer(opts, dir, `${round + 1}-direct`, sinkPort, sinkPid)
          : await transfer(opts, dir, `${round + 1}-through`, listenPort, sinkPid, proxyPid)
        outcome[path].push(t)
        const cpu = [...Object.entries(t.cpu), ['other processes', t.others] as const].map(([name, share]) => `${name} ${Math.round(share * 100)}%`).join(', ')
        opts.say(`round ${round + 1}/${opts.rounds} tcp ${path === 'direct' ? 'direct' : 'through vmfront'}: ${Math.round(t.mibPerSec)} MiB/s (${cpu}` +
          `${t.proxyPeakRssMiB === undefined ? '' : `; vmfront peak RSS ${Math.round(t.proxyPeakRssMiB)} MiB`})`)
      }
    }
  } catch (err) {
    Object.assign(outcome, { status: 'failed', reason: (err as Error).message })
    opts.say(`tcp: failed, ${(err as Error).message}`)
  } finally {
    await Promise.all(procs.map((proc) => proc.stop()))
  }
  return outcome
}
