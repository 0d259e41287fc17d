/**
 * @module test/bench/wrk
 * Runs wrk (pinned to core 0) against one target and parses its `--latency` output.
 */
import { spawn } from 'node:child_process'
import { canPin, track } from './proc.ts'

export interface WrkOptions {
  url: string
  /** Sent as the Host header when set (vmfront routes by it). */
  host?: string
  durationSec: number
  connections: number
  threads: number
}

export interface WrkResult {
  rps: number
  /** Latency percentiles in milliseconds. */
  p50: number
  p99: number
  requests: number
  /** Socket errors (connect, read, write, timeout) plus non-2xx/3xx answers. */
  errors: number
}

const TIME_UNITS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

function toMs (text: string): number {
  const match = /^([\d.]+)(us|ms|s|m|h)$/.exec(text)
  if (match === null) throw new Error(`wrk: cannot read the time "${text}"`)
  return Number(match[1]) * TIME_UNITS[match[2]]
}

/** Parses wrk's text report (run with `--latency`). Throws when a field is missing. */
export function parseWrk (out: string): WrkResult {
  const field = (re: RegExp, name: string): string => {
    const match = re.exec(out)
    if (match === null) throw new Error(`wrk: no ${name} in output:\n${out}`)
    return match[1]
  }
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out)
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out)
  const socketErrors = socket === null ? 0 : socket.slice(1).reduce((sum, n) => sum + Number(n), 0)
  return {
    rps: Number(field(/Requests\/sec:\s+([\d.]+)/, 'Requests/sec')),
    p50: toMs(field(/^\s+50%\s+(\S+)/m, 'p50')),
    p99: toMs(field(/^\s+99%\s+(\S+)/m, 'p99')),
    requests: Number(field(/(\d+) requests in/, 'request count')),
    errors: socketErrors + (non2xx === null ? 0 : Number(non2xx[1]))
  }
}

/** Runs one wrk load; rejects if wrk fails or overruns its duration by 30 s. */
export function runWrk (opts: WrkOptions): Promise<WrkResult> {
  const wrkArgs = [
    `-t${opts.threads}`, `-c${opts.connections}`, `-d${opts.durationSec}s`, '--latency',
    ...(opts.host === undefined ? [] : ['-H', `Host: ${opts.host}`]),
    opts.url
  ]
  const [cmd, args] = canPin ? ['taskset', ['-c', '0', 'wrk', ...wrkArgs]] : ['wrk', wrkArgs]
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    track(child)
    let out = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => { out += chunk })
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => { out += chunk })
    const timer = setTimeout(() => child.kill('SIGKILL'), (opts.durationSec + 30) * 1000)
    child.once('error', (err) => { clearTimeout(timer); reject(err) })
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      if (code !== 0) return reject(new Error(`wrk exited with ${code ?? signal}:\n${out}`))
      try { resolve(parseWrk(out)) } catch (err) { reject(err) }
    })
  })
}
