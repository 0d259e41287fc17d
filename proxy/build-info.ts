/**
 * @module proxy/build-info
 * What is running: the package version, the git commit when the code runs from a
 * checkout (read once from .git, no git binary needed), and the Node version.
 * Shown by `vmfront --version` and exported as `vmfront_build_info`.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
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

/** Resolves HEAD to a hash: a detached HEAD, a loose ref, or a packed ref. */
function readCommit (): string {
  try {
    const head = readFileSync(join(ROOT, '.git/HEAD'), 'utf8').trim()
    if (/^[0-9a-f]{40}$/.test(head)) return head
    const ref = /^ref: (refs\/\S+)$/.exec(head)?.[1]
    if (ref === undefined) return ''
    try {
      return readFileSync(join(ROOT, '.git', ref), 'utf8').trim()
    } catch {
      const packed = readFileSync(join(ROOT, '.git/packed-refs'), 'utf8')
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
