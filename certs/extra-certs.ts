/**
 * @module certs/extra-certs
 * Loads and validates extra_certs_file (SPEC §3): `[[certificate]]` entries with `domains`,
 * `certfile`, `keyfile`. Every entry is checked (key matches, not expired, covers each listed
 * domain) before anything is returned, so a reload is all or nothing. One inspection serves both
 * the loader (which throws the first problem) and `vmfront check` (which lists them all).
 */
import { readFile } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { createCachedCert, type CachedCert } from './cache.ts'
import { CertError, describeError } from './errors.ts'
import { parseTomlSubset, TomlSyntaxError, type TomlTable } from './toml-subset.ts'
import { certCoversName } from './x509.ts'

const ENTRY_KEYS = ['domains', 'certfile', 'keyfile'] as const
const DOMAIN = /^(\*\.)?([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/
/** A certificate that expires within this is reported as a warning by inspectExtraCerts. */
export const EXTRA_CERT_EXPIRY_WARNING_MS = 14 * 86_400_000

/** One finding in extra_certs_file. */
export interface ExtraCertProblem {
  readonly code: 'CERTS_EXTRA_UNREADABLE' | 'CERTS_EXTRA_INVALID'
  /** `error` stops a load; `warning` (expiring soon) does not. */
  readonly severity: 'error' | 'warning'
  /** The `[[certificate]]` entry (0-based), when the problem is in one. */
  readonly entry: number | undefined
  /** The dotted key: `certificate[1].certfile`, `certificate`, or "" (the whole file). */
  readonly key: string
  /** The 1-based line, when known (syntax errors). */
  readonly line: number | undefined
  /** What is wrong, without the file name or entry (the caller places it). */
  readonly message: string
  readonly cause?: unknown
}

/** What inspectExtraCerts found: the usable certificates by domain and every problem. */
export interface ExtraCertsInspection {
  readonly certs: Map<string, CachedCert>
  /** How many `[[certificate]]` entries loaded without error. */
  readonly entries: number
  readonly problems: readonly ExtraCertProblem[]
}

/**
 * Reads and checks every entry of `file`, collecting every problem instead of stopping at the
 * first: unreadable files, syntax (with its line), unknown keys, domains, unparseable
 * certificates or keys, a key that does not match, expiry (an error when expired, a warning when
 * within EXTRA_CERT_EXPIRY_WARNING_MS), a domain the certificate does not cover, a domain listed
 * twice. Relative certfile/keyfile paths are relative to `file`'s directory. Never throws for a
 * problem of the file.
 */
export async function inspectExtraCerts (file: string, now: number = Date.now()): Promise<ExtraCertsInspection> {
  const problems: ExtraCertProblem[] = []
  const out = new Map<string, CachedCert>()
  const add = (p: Partial<ExtraCertProblem> & Pick<ExtraCertProblem, 'message'>): void => {
    problems.push({ code: 'CERTS_EXTRA_INVALID', severity: 'error', entry: undefined, key: '', line: undefined, ...p })
  }
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    add({ code: 'CERTS_EXTRA_UNREADABLE', message: `cannot read: ${describeError(err)}`, cause: err })
    return { certs: out, entries: 0, problems }
  }
  let doc
  try {
    doc = parseTomlSubset(text)
  } catch (err) {
    if (!(err instanceof TomlSyntaxError)) throw err
    add({ line: err.line, message: err.message, cause: err })
    return { certs: out, entries: 0, problems }
  }
  for (const key of Object.keys(doc)) {
    if (key !== 'certificate') add({ key, message: `unknown key ${JSON.stringify(key)} (expected [[certificate]] entries)` })
  }
  const raw = doc.certificate ?? []
  if (!Array.isArray(raw) || raw.some((t) => typeof t !== 'object' || Array.isArray(t))) {
    add({ key: 'certificate', message: 'certificate must be [[certificate]] tables' })
    return { certs: out, entries: 0, problems }
  }
  const base = dirname(file)
  let entries = 0
  const checked = await Promise.all((raw as TomlTable[]).map(async (table, entry) => await inspectEntry(table, entry, base, now)))
  for (const [entry, result] of checked.entries()) {
    problems.push(...result.problems)
    if (result.cert === undefined) continue
    if (!result.problems.some((p) => p.severity === 'error')) entries++
    for (const domain of result.domains) {
      if (out.has(domain)) {
        add({ entry, key: `certificate[${entry}].domains`, message: `domain ${domain} is listed twice` })
        continue
      }
      out.set(domain, result.cert)
    }
  }
  return { certs: out, entries, problems }
}

/** Checks one entry; its certificate when it loads, and the domains it may serve. */
async function inspectEntry (table: TomlTable, entry: number, base: string, now: number): Promise<{ cert: CachedCert | undefined, domains: string[], problems: ExtraCertProblem[] }> {
  const problems: ExtraCertProblem[] = []
  const at = `certificate[${entry}]`
  const add = (key: string, message: string, options: { code?: ExtraCertProblem['code'], severity?: ExtraCertProblem['severity'], cause?: unknown } = {}): void => {
    problems.push({ code: options.code ?? 'CERTS_EXTRA_INVALID', severity: options.severity ?? 'error', entry, key: key === '' ? at : `${at}.${key}`, line: undefined, message, cause: options.cause })
  }
  const none = { cert: undefined, domains: [], problems }
  for (const key of Object.keys(table)) {
    if (!(ENTRY_KEYS as readonly string[]).includes(key)) add(key, `unknown key ${JSON.stringify(key)}`)
  }
  const { domains, certfile, keyfile } = table
  const domainsOk = Array.isArray(domains) && domains.length > 0 && domains.every((d) => typeof d === 'string')
  if (!domainsOk) add('domains', 'domains must be a non-empty array of strings')
  if (typeof certfile !== 'string' || certfile === '') add('certfile', 'certfile must be a file path')
  if (typeof keyfile !== 'string' || keyfile === '') add('keyfile', 'keyfile must be a file path')
  const names: string[] = []
  for (const d of domainsOk ? domains as string[] : []) {
    const domain = d.toLowerCase().replace(/\.$/, '')
    if (DOMAIN.test(domain)) names.push(domain)
    else add('domains', `invalid domain ${JSON.stringify(d)}`)
  }
  if (typeof certfile !== 'string' || certfile === '' || typeof keyfile !== 'string' || keyfile === '') return none
  const certPath = resolve(base, certfile)
  const keyPath = resolve(base, keyfile)
  const read = async (key: string, path: string): Promise<string | undefined> => {
    try {
      return await readFile(path, 'utf8')
    } catch (err) {
      add(key, `cannot read ${path}: ${describeError(err)}`, { code: 'CERTS_EXTRA_UNREADABLE', cause: err })
      return undefined
    }
  }
  const [chainPem, keyPem] = await Promise.all([read('certfile', certPath), read('keyfile', keyPath)])
  if (chainPem === undefined || keyPem === undefined) return none
  let cert: CachedCert
  try {
    cert = createCachedCert('extra', chainPem, keyPem)
  } catch (err) {
    add('', `${certPath} / ${keyPath}: ${describeError(err)}`, { cause: err })
    return none
  }
  const notAfter = cert.info.notAfter.getTime()
  if (notAfter <= now) add('certfile', `${certPath} expired on ${cert.info.notAfter.toISOString()}`)
  else if (notAfter - now <= EXTRA_CERT_EXPIRY_WARNING_MS) {
    add('certfile', `${certPath} expires on ${cert.info.notAfter.toISOString()}, in ${Math.floor((notAfter - now) / 86_400_000)} days`, { severity: 'warning' })
  }
  for (const domain of names) {
    if (!certCoversName(cert.info.dnsNames, domain)) {
      add('domains', `${certPath} does not cover ${domain} (its names: ${cert.info.dnsNames.join(', ') || 'none'})`)
    }
  }
  return { cert, domains: names, problems }
}

/**
 * Reads `file` and returns the certificates by domain (lower-case, as listed; `*.x` for wildcards).
 * Relative certfile/keyfile paths are relative to `file`'s directory. Warnings (a certificate
 * expiring soon) do not stop the load.
 * @throws CertError CERTS_EXTRA_UNREADABLE (file, cert or key unreadable) or CERTS_EXTRA_INVALID
 *   (syntax, unknown key, bad domain, key mismatch, expired, domain not covered, duplicate domain),
 *   for the first problem, with `file` and `entry` (0-based index) set and both named in the message
 */
export async function loadExtraCerts (file: string, now: number = Date.now()): Promise<Map<string, CachedCert>> {
  const { certs, problems } = await inspectExtraCerts(file, now)
  const first = problems.find((p) => p.severity === 'error')
  if (first === undefined) return certs
  const where = first.entry === undefined ? file : `${file}: [[certificate]] #${first.entry + 1}`
  throw new CertError(first.code, `${where}: ${first.message}`, { file, entry: first.entry, cause: first.cause })
}
