/**
 * @module certs/file-storage
 * Storage on the local file system: atomic writes (tmp + fsync + rename + directory fsync),
 * files 0600, directories 0700, every path checked to stay under the root.
 */
import { randomBytes } from 'node:crypto'
import { constants as fsConstants } from 'node:fs'
import { mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises'
import { dirname, join, resolve, sep } from 'node:path'
import { CertError, errorMessage } from './errors.ts'
import type { Storage } from './storage.ts'

/** File mode of every stored file: certificates are not secret, but nothing else needs to read them. */
export const FILE_MODE = 0o600
export const DIR_MODE = 0o700

function isNotFound (err: unknown): boolean {
  return (err as { code?: unknown }).code === 'ENOENT'
}

/** Writes `data` to `file` atomically: a crash leaves the old file or the new one, never half of one. */
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
    await handle.close()
    await rm(tmp, { force: true })
    throw err
  }
  await handle.close()
  try {
    await rename(tmp, file)
  } catch (err) {
    await rm(tmp, { force: true })
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
      try {
        return await readFile(pathOf(key))
      } catch (err) {
        if (isNotFound(err)) return undefined
        throw err
      }
    },
    async store (key, data) {
      const file = pathOf(key)
      await ensureRoot()
      try {
        await writeFileAtomic(file, data)
      } catch (err) {
        throw new CertError('CERTS_STORAGE_FAILED', `cannot write ${file}: ${errorMessage(err)}`, { cause: err })
      }
    },
    async delete (key) {
      await rm(pathOf(key), { force: true })
    },
    async list (prefix) {
      try {
        return (await readdir(pathOf(prefix))).filter((n) => !n.startsWith('.')).sort()
      } catch (err) {
        if (isNotFound(err)) return []
        throw err
      }
    }
  }
}
