/**
 * Full and unwritable disks for tests, without faking the file system:
 * - `mountFullTmpfs`: a tiny tmpfs (root only) filled up, so writes fail with ENOSPC;
 * - `startProxyWithConfig({ fileSizeLimitKb })`: the proxy under `ulimit -f`, so writing past
 *   the limit fails with EFBIG (works for any user; SIGXFSZ is ignored, or it would kill the process);
 * and a recursive file listing to check that nothing (no temporary file) was left behind.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { followProcess, type FollowedProcess } from './process-logs.ts'
import { CLI, NODE } from './proxy-process.ts'

interface Teardown { teardown (fn: () => unknown): void }

/** True when this process may mount file systems (root; CI runs as root). */
export function canMount (): boolean {
  return process.getuid?.() === 0
}

/**
 * Mounts a `sizeKb` tmpfs on `dir` (created) and fills it with a file named `fill`; unmounted at
 * teardown. Returns a function that frees the space again. Throws when mount fails.
 */
export function mountFullTmpfs (t: Teardown, dir: string, sizeKb = 256): { free: () => void } {
  mkdirSync(dir, { recursive: true })
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeKb}k,mode=0700`, 'tmpfs', dir], { encoding: 'utf8' })
  if (mounted.status !== 0) throw new Error(`mount -t tmpfs failed: ${mounted.stderr}`)
  t.teardown(() => { spawnSync('umount', ['-l', dir]) })
  // Fill it: one page at a time until the kernel says no.
  const fill = join(dir, 'fill')
  spawnSync('dd', ['if=/dev/zero', `of=${fill}`, 'bs=4k'], { encoding: 'utf8' })
  return { free: () => { rmSync(fill, { force: true }) } }
}

/** Every file (not folder) under `dir`, relative, sorted. */
export function listFiles (dir: string): string[] {
  const out: string[] = []
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name)
      if (e.isDirectory()) walk(p)
      else out.push(relative(dir, p))
    }
  }
  walk(dir)
  return out.sort()
}

export interface RawProxy extends FollowedProcess {
  child: ChildProcess
  ports: Record<string, number>
  status (): Promise<Record<string, unknown>>
}

/**
 * Starts `vmfront proxy` with exactly `config` (TOML text written to `configFile`), optionally
 * under `ulimit -f fileSizeLimitKb`, waits for its start-up line and kills it at teardown.
 */
export async function startProxyWithConfig (t: Teardown, configFile: string, config: string, opts: { fileSizeLimitKb?: number } = {}): Promise<RawProxy> {
  writeFileSync(configFile, config)
  const args = [CLI, 'proxy', '--config', configFile]
  const child = opts.fileSizeLimitKb === undefined
    ? spawn(NODE, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    // Without tap's NODE_OPTIONS (re-added to every child's environment by its process-info hook):
    // that hook's signal-exit handles SIGXFSZ by re-raising it, which kills the proxy.
    : spawn('bash', ['-c', `trap '' XFSZ && ulimit -f ${opts.fileSizeLimitKb} && unset NODE_OPTIONS && exec "$0" "$@"`, NODE, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  const followed = followProcess(t, child, 'proxy')
  const started = await followed.waitForLog((l) => l.msg === 'vmfront proxy started', 15_000)
  const ports = started.listeners as Record<string, number>
  return {
    ...followed,
    child,
    ports,
    async status () {
      const res = await fetch(`http://127.0.0.1:${ports.admin}/status`)
      return await res.json() as Record<string, unknown>
    }
  }
}
