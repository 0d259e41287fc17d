/**
 * @module test/torture/attacks/slowhttptest
 * slowhttptest (Debian package `slowhttptest`) against the http listener: slow read
 * with the parameters of issue 9, slowloris (slow headers) and slow body (R-U-Dead-Yet).
 * slowhttptest goes through the proxy as if it were an HTTP proxy (`-d`;
 * its probe goes the same way), so requests carry `Host: torture.test` without any name resolution.
 */
import { spawn, spawnSync } from 'node:child_process'
import { track } from '../ipc.ts'
import type { AttackContext, AttackOutcome, TortureAttack } from '../types.ts'

const INSTALL = 'slowhttptest is not installed (Debian/Ubuntu: apt-get install slowhttptest)'

function unavailable (): string | undefined {
  const probe = spawnSync('slowhttptest', ['-h'], { stdio: 'ignore' })
  return probe.error !== undefined ? INSTALL : undefined
}

/** Runs slowhttptest (it stops itself after `-l` seconds; killed if it overstays by 30 s). */
async function slowhttptest (ctx: AttackContext, args: string[], seconds: number): Promise<AttackOutcome> {
  const proxy = `127.0.0.1:${ctx.stand.ports.http}`
  const full = [...args, '-l', String(seconds), '-d', proxy, '-p', '3']
  ctx.say(`  slowhttptest ${full.join(' ')}`)
  const child = spawn('slowhttptest', full, { stdio: ['ignore', 'pipe', 'pipe'] })
  track(child)
  let output = ''
  child.stdout.setEncoding('utf8')
  child.stderr.setEncoding('utf8')
  // Keep only the tail: slowhttptest redraws its status every second.
  const keep = (c: string): void => { output = (output + c).slice(-8000) }
  child.stdout.on('data', keep)
  child.stderr.on('data', keep)
  let killed = false
  const timer = setTimeout(() => { killed = true; child.kill('SIGKILL') }, (seconds + 30) * 1000)
  const code = await new Promise<number | string | null>((resolve) => child.once('exit', (c, s) => { resolve(c ?? s) }))
  clearTimeout(timer)
  // eslint-disable-next-line no-control-regex
  const plain = output.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '')
  const last = (re: RegExp): string => [...plain.matchAll(re)].at(-1)?.[1]?.trim() ?? '?'
  const stats: Record<string, number | string> = {
    'slowhttptest exit': String(code),
    'connected at the end': last(/connected:\s+(\d+)/g),
    'closed': last(/closed:\s+(\d+)/g),
    'pending': last(/pending:\s+(\d+)/g),
    'service available (its probe)': last(/service available:\s+(\S+)/g)
  }
  const problems: string[] = []
  const notes: string[] = []
  if (killed) problems.push(`slowhttptest did not stop ${seconds + 30} s after its -l ${seconds}; killed`)
  if (/Exit status:\s*([^\n]+)/.test(plain)) notes.push(`slowhttptest: ${last(/Exit status:\s*([^\n]+)/g)}`)
  return { stats, problems, notes }
}

export const slowRead: TortureAttack = {
  name: 'slow-read',
  summary: 'slowhttptest -X: 200 connections pipelining 3 GETs of /big each and reading 32 bytes every 5 s through a 512-1024 byte window, for 20 s (issue 9 point 1)',
  unavailable,
  run: (ctx) => ctx.quick
    ? slowhttptest(ctx, ['-c', '50', '-X', '-r', '50', '-w', '512', '-y', '1024', '-n', '5', '-z', '32', '-k', '3', '-u', `http://${ctx.stand.host}/big`], 6)
    : slowhttptest(ctx, ['-c', '200', '-X', '-r', '200', '-w', '512', '-y', '1024', '-n', '5', '-z', '32', '-k', '3', '-u', `http://${ctx.stand.host}/big`], 20)
}

export const slowloris: TortureAttack = {
  name: 'slowloris',
  summary: 'slowhttptest -H: 200 connections sending one header line every 2 s, for 15 s (cut by timeouts.request_headers)',
  unavailable,
  run: (ctx) => slowhttptest(ctx, ['-H', '-c', ctx.quick ? '50' : '200', '-r', '200', '-i', '2', '-x', '24', '-u', `http://${ctx.stand.host}/`], ctx.quick ? 6 : 15)
}

export const slowBody: TortureAttack = {
  name: 'slow-body',
  summary: 'slowhttptest -B: 200 POSTs of /upload announcing 8 KiB and sending a few bytes every 2 s, for 15 s (streamed to the VM)',
  unavailable,
  run: (ctx) => slowhttptest(ctx, ['-B', '-c', ctx.quick ? '50' : '200', '-r', '200', '-i', '2', '-x', '24', '-s', '8192', '-u', `http://${ctx.stand.host}/upload`], ctx.quick ? 6 : 15)
}
