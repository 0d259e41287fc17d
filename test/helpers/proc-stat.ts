/**
 * What /proc says about a process of ours: CPU time used and peak RSS over an
 * interval (the bench's TCP row and the forwarder's memory tests).
 */
import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'

const TICKS_PER_SECOND = (() => {
  try { return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100 } catch { return 100 }
})()

/**
 * CPU time every core of the machine spent busy (user, nice, system, irq, softirq,
 * steal: /proc/stat's first line), in seconds; the difference over an interval,
 * less our own processes' share, is what others used meanwhile.
 */
export function machineBusySeconds (): number {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
  const [user, nice, system, , , irq, softirq, steal] = fields
  return (user + nice + system + irq + softirq + steal) / TICKS_PER_SECOND
}

/** utime + stime of a process in seconds (/proc/PID/stat fields 14 and 15). */
export function cpuSeconds (pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // The command name (field 2) may hold spaces: count fields after its closing ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND
}

function statusBytes (pid: number, key: string): number {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m === null ? 0 : Number(m[1]) * 1024
}

/** Resets the peak RSS (VmHWM) of a process we own: `peakRss` then covers from now on. */
export function resetPeakRss (pid: number): void {
  writeFileSync(`/proc/${pid}/clear_refs`, '5')
}

/** The highest RSS since start or since `resetPeakRss`, in bytes. */
export function peakRss (pid: number): number {
  return statusBytes(pid, 'VmHWM')
}

/** The current RSS, in bytes. */
export function rss (pid: number): number {
  return statusBytes(pid, 'VmRSS')
}
