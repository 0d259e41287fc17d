/**
 * @module certs/file-storage
 * Storage on the local file system: atomic writes (tmp + fsync + rename + directory fsync),
 * files 0600, directories 0700, every path checked to stay under the root. I/O failures reject
 * with CertError CERTS_STORAGE_FAILED naming the file and the reason in words.
 */
import { randomBytes } from 'node:crypto'
import { constants as fsConstants } from 'node:fs'
import { mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises'
import { dirname, join, resolve, sep } from 'node:path'
import { CertError, describeError } from './errors.ts'
import type { Storage } from './storage.ts'

/** File mode of every stored file: certificates are not secret, but nothing else needs to read them. */
export const FILE_MODE = 0o600
export const DIR_MODE = 0o700

function isNotFound (err: unknown): boolean {
  return (err as { code?: unknown }).code === 'ENOENT'
}

async function removeQuietly (file: string): Promise<void> {
  await rm(file, { force: true }).catch(() => {})
}

/**
 * Writes `data` to `file` atomically: a crash leaves the old file or the new one, never half of
 * one. A failed write (disk full, quota, I/O error) removes its temporary file before rejecting
 * with the original error, so failures never leave `.*.tmp` files behind.
 */
export async function writeFileAtomic (file: string, data: string | Buffer, mode = FILE_MODE): Promise<void> {
  const dir = dirname(file)
  await mkdir(dir, { recursive: true, mode: DIR_MODE })
  const tmp = join(dir, `.${randomBytes(6).toString('hex')}.tmp`)
  const handle = await open(tmp, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, mode)
  try {
    await handle.writeFile(data)
    // The umask may have narrowed nothing but could not widen: set the mode explicitly anyway.
    await handle.chmod(mode)
    await handle.sync()
  } catch (err) {
    await handle.close().catch(() => {})
    await removeQuietly(tmp)
    throw err
  }
  try {
    // close() can report a deferred write error (NFS, quotas): then the file is not good either.
    await handle.close()
    await rename(tmp, file)
  } catch (err) {
    await removeQuietly(tmp)
    throw err
  }
  // fsync the directory so the rename itself survives a power loss.
  const dirHandle = await open(dir, fsConstants.O_RDONLY)
  try {
    await dirHandle.sync()
  } finally {
    await dirHandle.close()
  }
}

function storageFailure (verb: string, file: string, err: unknown): CertError {
  return new CertError('CERTS_STORAGE_FAILED', `cannot ${verb} ${file}: ${describeError(err)}`, { cause: err, file })
}

/**
 * Creates a Storage rooted at `root` (created 0700 when missing). Keys are `/`-separated; a key
 * with an empty, `.` or `..` segment, or one resolving outside the root, is rejected.
 */
export function createFileStorage (root: string): Storage {
  const base = resolve(root)

  function pathOf (key: string): string {
    const parts = key.split('/')
    if (parts.some((p) => p === '' || p === '.' || p === '..' || p.includes('\\') || p.includes('\0'))) {
      throw new CertError('CERTS_STORAGE_KEY_INVALID', `invalid storage key ${JSON.stringify(key)}`)
    }
    const full = resolve(base, ...parts)
    if (!full.startsWith(base + sep)) {
      throw new CertError('CERTS_STORAGE_KEY_INVALID', `storage key ${JSON.stringify(key)} leaves ${base}`)
    }
    return full
  }

  async function ensureRoot (): Promise<void> {
    await mkdir(base, { recursive: true, mode: DIR_MODE })
  }

  return {
    async load (key) {
      const file = pathOf(key)
      try {
        return await readFile(file)
      } catch (err) {
        if (isNotFound(err)) return undefined
        throw storageFailure('read', file, err)
      }
    },
    async store (key, data) {
      const file = pathOf(key)
      try {
        await ensureRoot()
        await writeFileAtomic(file, data)
      } catch (err) {
        throw storageFailure('write', file, err)
      }
    },
    async delete (key) {
      const file = pathOf(key)
      try {
        await rm(file, { force: true })
      } catch (err) {
        throw storageFailure('delete', file, err)
      }
    },
    async list (prefix) {
      const dir = pathOf(prefix)
      try {
        return (await readdir(dir)).filter((n) => !n.startsWith('.')).sort()
      } catch (err) {
        if (isNotFound(err)) return []
        throw storageFailure('list', dir, err)
      }
    }
  }
}
