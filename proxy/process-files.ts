/**
 * @module proxy/process-files
 * The files a running proxy owns on disk besides its data: the PID file (the
 * process the daemon and a takeover find) and data_dir's creation.
 */
import { mkdirSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'
import type { Logger } from './log.ts'

/**
 * Writes `file` with this process's PID (atomically, without a newline: mulchd's Atoi
 * reads it). `takingOverFrom`: the PID a `--takeover` replaces, whose file this is meant to replace.
 */
export function writePidFile (file: string, logger: Logger, takingOverFrom?: number): void {
  try {
    const previous = Number(readFileSync(file, 'utf8').trim())
    if (Number.isInteger(previous) && previous > 0 && previous !== process.pid && previous !== takingOverFrom) {
      try {
        process.kill(previous, 0)
        logger.warn('pid file names a live process: replacing it', { file, pid: previous })
      } catch { /* stale: nothing runs under that pid */ }
    }
  } catch { /* no previous file */ }
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 })
  // rename keeps a reader (the daemon) from ever seeing an empty pid file; no
  // trailing newline, because mulchd parses it with strconv.Atoi (SPEC §10).
  writeFileSync(`${file}.tmp`, String(process.pid), { mode: 0o644 })
  renameSync(`${file}.tmp`, file)
}

/**
 * Creates a missing data_dir 0700. An existing one keeps its mode (it may be
 * mulchd's data_path, SPEC §10); one writable by group or others is only warned about.
 */
export function prepareDataDir (dir: string, logger: Logger): void {
  let mode: number | undefined
  try { mode = statSync(dir).mode } catch { /* missing: created below */ }
  if (mode === undefined) {
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    return
  }
  if ((mode & 0o022) !== 0) logger.warn('data_dir is writable by group or others: certificates and keys live there', { data_dir: dir, mode: (mode & 0o777).toString(8).padStart(4, '0') })
}

export function removePidFile (file: string): void {
  try {
    if (readFileSync(file, 'utf8').trim() === String(process.pid)) unlinkSync(file)
  } catch { /* already gone */ }
}
