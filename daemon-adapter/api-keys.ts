/**
 * @module daemon-adapter/api-keys
 * API keys: loaded from `api_keys_file` (one per line, either the key itself or
 * `sha256:<hex>` of it, so keys can be stored hashed), or generated at first start
 * into `data_dir/api-key` (0600). Only SHA-256 hashes are kept in memory, and a
 * presented key is checked against every one with a constant-time comparison.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { AdapterError, FileInvalidError } from './errors.ts'
import type { Problem } from './errors.ts'

/** The file name of the generated key inside `data_dir`. */
export const GENERATED_KEY_FILE = 'api-key'

/** SHA-256 of a key. */
export function hashKey (key: string): Buffer {
  return createHash('sha256').update(key, 'utf8').digest()
}

/** Checks presented keys against stored hashes. */
export interface KeyChecker {
  /** True when `key` matches one of the keys; takes the same time whichever matches. */
  verify (key: string): boolean
  readonly count: number
}

export function createKeyChecker (hashes: readonly Buffer[]): KeyChecker {
  return {
    count: hashes.length,
    verify (key) {
      const presented = hashKey(key)
      let ok = false
      // No early exit: every stored hash is compared.
      for (const hash of hashes) ok = timingSafeEqual(presented, hash) || ok
      return ok
    }
  }
}

function readLines (file: string): string[] {
  try {
    return readFileSync(file, 'utf8').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'))
  } catch (err) {
    throw new AdapterError('CONFIG_UNREADABLE', `${file}: cannot read the API keys file: ${(err as Error).message}`, { cause: err })
  }
}

/**
 * Loads the key hashes: from `apiKeysFile`, or from (creating it if missing)
 * `dataDir/api-key`.
 * @throws AdapterError CONFIG_UNREADABLE, FileInvalidError CONFIG_INVALID
 */
export function loadApiKeys (apiKeysFile: string, dataDir: string): { hashes: Buffer[], generated?: string } {
  if (apiKeysFile === '') {
    const file = join(dataDir, GENERATED_KEY_FILE)
    let generated: string | undefined
    try {
      writeFileSync(file, randomBytes(32).toString('base64url') + '\n', { mode: 0o600, flag: 'wx' })
      generated = file
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new AdapterError('CONFIG_UNREADABLE', `${file}: cannot create the API key: ${(err as Error).message}`, { cause: err })
      }
    }
    // Whoever made it, the key must not be readable by others.
    if ((statSync(file).mode & 0o077) !== 0) chmodSync(file, 0o600)
    const keys = readLines(file)
    if (keys.length === 0) throw new FileInvalidError('CONFIG_INVALID', file, [{ key: '(content)', message: 'holds no key: delete it to have a new one generated' }])
    return { hashes: keys.map(hashKey), generated }
  }
  const problems: Problem[] = []
  const hashes: Buffer[] = []
  readLines(apiKeysFile).forEach((line, i) => {
    const hashed = /^sha256:([0-9a-f]{64})$/i.exec(line)
    if (hashed !== null) hashes.push(Buffer.from(hashed[1], 'hex'))
    else if (line.startsWith('sha256:')) problems.push({ key: `line ${i + 1}`, message: 'a sha256: entry needs 64 hex digits' })
    else if (line.length < 16) problems.push({ key: `line ${i + 1}`, message: `a key must be at least 16 characters (this one has ${line.length})` })
    else hashes.push(hashKey(line))
  })
  if (problems.length === 0 && hashes.length === 0) problems.push({ key: '(content)', message: 'holds no key' })
  if (problems.length > 0) throw new FileInvalidError('CONFIG_INVALID', apiKeysFile, problems)
  return { hashes }
}

/**
 * The key a local client can use: the generated key, or the first plain key of
 * `apiKeysFile`. Undefined when there is none (only hashed entries).
 */
export function readClientKey (apiKeysFile: string, dataDir: string): string | undefined {
  const file = apiKeysFile === '' ? join(dataDir, GENERATED_KEY_FILE) : apiKeysFile
  return readLines(file).find((l) => !l.startsWith('sha256:'))
}
