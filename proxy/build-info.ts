/**
 * @module proxy/build-info
 * What is running: the package version, the git commit when the code runs from a
 * checkout (read once from .git, no git binary needed), and the Node version.
 * Shown by `vmfront --version` and exported as `vmfront_build_info`.
 */
import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

export interface BuildInfo {
  readonly version: string
  /** The commit's full hash, or '' when the code is not in a git checkout. */
  readonly commit: string
  readonly node: string
}

const ROOT = join(fileURLToPath(import.meta.url), '../..')

function readVersion (): string {
  try {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version?: unknown }
    return typeof pkg.version === 'string' ? pkg.version : '0.0.0'
  } catch {
    return '0.0.0'
  }
}

/** The git directory: `.git` itself, or where a worktree's `.git` file points. */
function gitDir (): { dir: string, common: string } {
  const dotGit = join(ROOT, '.git')
  const pointer = /^gitdir: (.+)$/m.exec(readFileSync(dotGit, 'utf8'))?.[1]
  if (pointer === undefined) throw new Error('not a git checkout')
  const dir = resolve(ROOT, pointer.trim())
  let common = dir
  try { common = resolve(dir, readFileSync(join(dir, 'commondir'), 'utf8').trim()) } catch { /* not a worktree */ }
  return { dir, common }
}

/** Resolves HEAD to a hash: a detached HEAD, a loose ref, or a packed ref. */
function readCommit (): string {
  try {
    let git: { dir: string, common: string }
    try {
      git = gitDir()
    } catch {
      git = { dir: join(ROOT, '.git'), common: join(ROOT, '.git') }
    }
    const head = readFileSync(join(git.dir, 'HEAD'), 'utf8').trim()
    if (/^[0-9a-f]{40}$/.test(head)) return head
    const ref = /^ref: (refs\/\S+)$/.exec(head)?.[1]
    if (ref === undefined) return ''
    try {
      return readFileSync(join(git.common, ref), 'utf8').trim()
    } catch {
      const packed = readFileSync(join(git.common, 'packed-refs'), 'utf8')
      for (const line of packed.split('\n')) {
        const [hash, name] = line.split(' ')
        if (name === ref && /^[0-9a-f]{40}$/.test(hash)) return hash
      }
    }
  } catch { /* not a checkout (an npm install, a Docker image) */ }
  return ''
}

let cached: BuildInfo | undefined

/** The build information, read once per process. */
export function buildInfo (): BuildInfo {
  cached ??= Object.freeze({ version: readVersion(), commit: readCommit(), node: process.version })
  return cached
}

/** One line for `vmfront --version`. */
export function versionLine (): string {
  const info = buildInfo()
  return `vmfront ${info.version}${info.commit === '' ? '' : ` (commit ${info.commit.slice(0, 12)})`} on Node ${info.node}`
}
