/**
 * @module certs/extra-certs
 * Loads and validates extra_certs_file (SPEC §3): `[[certificate]]` entries with `domains`,
 * `certfile`, `keyfile`. Every entry is checked (key matches, not expired, covers each listed
 * domain) before anything is returned, so a reload is all or nothing.
 */
import { readFile } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { createCachedCert, type CachedCert } from './cache.ts'
import { CertError, errorMessage } from './errors.ts'
import { parseTomlSubset, TomlSyntaxError, type TomlTable } from './toml-subset.ts'
import { certCoversName } from './x509.ts'

const ENTRY_KEYS = ['domains', 'certfile', 'keyfile'] as const
const DOMAIN = /^(\*\.)?([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/

/**
 * Reads `file` and returns the certificates by domain (lower-case, as listed; `*.x` for wildcards).
 * Relative certfile/keyfile paths are relative to `file`'s directory.
 * @throws CertError CERTS_EXTRA_UNREADABLE (file, cert or key unreadable) or CERTS_EXTRA_INVALID
 *   (syntax, unknown key, bad domain, key mismatch, expired, domain not covered, duplicate domain),
 *   with `file` and `entry` (0-based index) set and both named in the message
 */
export async function loadExtraCerts (file: string, now: number = Date.now()): Promise<Map<string, CachedCert>> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    throw new CertError('CERTS_EXTRA_UNREADABLE', `${file}: cannot read: ${errorMessage(err)}`, { cause: err, file })
  }
  let doc
  try {
    doc = parseTomlSubset(text)
  } catch (err) {
    if (err instanceof TomlSyntaxError) throw new CertError('CERTS_EXTRA_INVALID', `${file}: ${err.message}`, { cause: err, file })
    throw err
  }
  for (const key of Object.keys(doc)) {
    if (key !== 'certificate') throw new CertError('CERTS_EXTRA_INVALID', `${file}: unknown key ${JSON.stringify(key)} (expected [[certificate]] entries)`, { file })
  }
  const raw = doc.certificate ?? []
  if (!Array.isArray(raw) || raw.some((t) => typeof t !== 'object' || Array.isArray(t))) {
    throw new CertError('CERTS_EXTRA_INVALID', `${file}: certificate must be [[certificate]] tables`, { file })
  }
  const out = new Map<string, CachedCert>()
  const base = dirname(file)
  for (const [entry, table] of (raw as TomlTable[]).entries()) {
    const where = `${file}: [[certificate]] #${entry + 1}`
    const fail = (code: 'CERTS_EXTRA_INVALID' | 'CERTS_EXTRA_UNREADABLE', message: string, cause?: unknown): CertError =>
      new CertError(code, `${where}: ${message}`, { file, entry, cause })
    for (const key of Object.keys(table)) {
      if (!(ENTRY_KEYS as readonly string[]).includes(key)) throw fail('CERTS_EXTRA_INVALID', `unknown key ${JSON.stringify(key)}`)
    }
    const { domains, certfile, keyfile } = table
    if (!Array.isArray(domains) || domains.length === 0 || domains.some((d) => typeof d !== 'string')) {
      throw fail('CERTS_EXTRA_INVALID', 'domains must be a non-empty array of strings')
    }
    if (typeof certfile !== 'string' || certfile === '') throw fail('CERTS_EXTRA_INVALID', 'certfile must be a file path')
    if (typeof keyfile !== 'string' || keyfile === '') throw fail('CERTS_EXTRA_INVALID', 'keyfile must be a file path')
    const certPath = resolve(base, certfile)
    const keyPath = resolve(base, keyfile)
    const read = async (path: string): Promise<string> => {
      try {
        return await readFile(path, 'utf8')
      } catch (err) {
        throw fail('CERTS_EXTRA_UNREADABLE', `cannot read ${path}: ${errorMessage(err)}`, err)
      }
    }
    const [chainPem, keyPem] = await Promise.all([read(certPath), read(keyPath)])
    let cert: CachedCert
    try {
      cert = createCachedCert('extra', chainPem, keyPem)
    } catch (err) {
      throw fail('CERTS_EXTRA_INVALID', `${certPath} / ${keyPath}: ${errorMessage(err)}`, err)
    }
    if (cert.info.notAfter.getTime() <= now) {
      throw fail('CERTS_EXTRA_INVALID', `${certPath} expired on ${cert.info.notAfter.toISOString()}`)
    }
    for (const d of domains as string[]) {
      const domain = d.toLowerCase().replace(/\.$/, '')
      if (!DOMAIN.test(domain)) throw fail('CERTS_EXTRA_INVALID', `invalid domain ${JSON.stringify(d)}`)
      if (!certCoversName(cert.info.dnsNames, domain)) {
        throw fail('CERTS_EXTRA_INVALID', `${certPath} does not cover ${domain} (its names: ${cert.info.dnsNames.join(', ') || 'none'})`)
      }
      if (out.has(domain)) throw fail('CERTS_EXTRA_INVALID', `domain ${domain} is listed twice`)
      out.set(domain, cert)
    }
  }
  return out
}
