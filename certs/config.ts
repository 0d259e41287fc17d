/**
 * @module certs/config
 * CertManagerOptions: the types, their defaults, and the one-time validation into a frozen
 * ResolvedCertOptions (directory shortcuts resolved, ca_file read).
 */
import { readFileSync } from 'node:fs'
import { CertError, describeError } from './errors.ts'
import type { ChallengeStore } from './http01.ts'
import type { Issuer } from './issuer.ts'
import type { Storage } from './storage.ts'
import { KEY_TYPES, type KeyType, splitPemCertificates } from './x509.ts'

/** Directory shortcuts accepted in `acme.directoryUrl`. */
export const DIRECTORY_SHORTCUTS = {
  letsencrypt: 'https://acme-v02.api.letsencrypt.org/directory',
  'letsencrypt-staging': 'https://acme-staging-v02.api.letsencrypt.org/directory'
} as const

/** The logger contract (proxy/log.ts fits it): JSON-lines `msg` + fields. */
export interface CertLogger {
  debug (msg: string, fields?: Record<string, unknown>): void
  info (msg: string, fields?: Record<string, unknown>): void
  warn (msg: string, fields?: Record<string, unknown>): void
  error (msg: string, fields?: Record<string, unknown>): void
}

const NOOP_LOGGER: CertLogger = { debug () {}, info () {}, warn () {}, error () {} }

/** The `[acme]` section. */
export interface AcmeOptions {
  /** ACME is opt-in: false means self-signed (or user certificates) only. */
  enabled: boolean
  /** `letsencrypt`, `letsencrypt-staging`, or an https:// directory URL. */
  directoryUrl: string
  /** Contact address for the account ("" = none; Let's Encrypt no longer sends expiry mail). */
  email: string
  /** PEM file of an extra CA to trust for the directory connection (added to the system roots). */
  caFile?: string
  /** CA certificate profile sent with each order (e.g. `tlsserver`, `shortlived`); "" = CA default. */
  profile?: string
}

/** Options of createCertManager. Every optional field has the default shown. */
export interface CertManagerOptions {
  /** data_dir: `certs/` and `acme/` are created under it (0700, files 0600). */
  storageDir: string
  acme: AcmeOptions
  /** TOML file of user certificates (`[[certificate]] domains/certfile/keyfile`), which win over ACME. */
  extraCertsFile?: string
  /** "May I get a certificate for this name?" Called on handshakes for unknown names: keep it cheap. */
  policy: (domain: string) => boolean
  logger?: CertLogger
  /** Renew when this share of the certificate's lifetime remains. Default 1/3. */
  renewRatio?: number
  /** Key type of ACME certificates. Default `ec-p256`. */
  keyType?: KeyType
  /** How often the renewal loop looks at every certificate. Default 5 min. */
  maintenanceIntervalMs?: number
  /** First retry delay after a failed order for a domain (doubles each failure). Default 2 min. */
  backoffBaseMs?: number
  /** Cap of the per-domain retry delay. Default 1 h. */
  backoffMaxMs?: number
  /** Orders running at once across all domains (protects the CA's rate limits). Default 4. */
  maxConcurrentOrders?: number
  /** First delay when polling the CA for a challenge/order status. Default 1 s. */
  acmePollMinMs?: number
  /** Longest delay between status polls. Default 10 s. */
  acmePollMaxMs?: number
  /** Status polls before an order is given up. Default 10. */
  acmePollAttempts?: number
  /** Timeout of each HTTP request to the CA. Default 30 s. */
  acmeHttpTimeoutMs?: number
  /** Replaces file storage under storageDir (tests). */
  storage?: Storage
  /**
   * Replaces the acme-client issuer: tests, and a proxy's workers, whose orders one
   * process makes for all of them.
   */
  issuer?: Issuer
  /**
   * The HTTP-01 tokens of orders in progress (default: a store of this manager's own).
   * A proxy with several workers shares the tokens its primary's orders set with them.
   */
  challenges?: ChallengeStore
  /**
   * The self-signed fallback's PEMs (default: a new one, made at construction: an
   * RSA key and a signature, ~0.1-0.2 s). A proxy's workers take their primary's,
   * so every worker presents the same fallback and none spends that time at start.
   */
  fallback?: { readonly key: string, readonly cert: string }
}

/** Validated options with defaults applied. */
export interface ResolvedCertOptions {
  readonly storageDir: string
  readonly acme: Readonly<Required<Omit<AcmeOptions, 'caFile'>>> & { readonly caFile: string | undefined, readonly caPem: string | undefined }
  readonly extraCertsFile: string | undefined
  readonly logger: CertLogger
  readonly renewRatio: number
  readonly keyType: KeyType
  readonly maintenanceIntervalMs: number
  readonly backoffBaseMs: number
  readonly backoffMaxMs: number
  readonly maxConcurrentOrders: number
  readonly acmePollMinMs: number
  readonly acmePollMaxMs: number
  readonly acmePollAttempts: number
  readonly acmeHttpTimeoutMs: number
}

function invalid (key: string, message: string): CertError {
  return new CertError('CERTS_CONFIG_INVALID', `${key}: ${message}`)
}

function positive (key: string, value: number | undefined, fallback: number): number {
  const v = value ?? fallback
  if (!Number.isFinite(v) || v <= 0) throw invalid(key, `must be a positive number, got ${String(value)}`)
  return v
}

/** Resolves a directory shortcut or checks an https:// URL. */
export function resolveDirectoryUrl (value: string): string {
  const url = (DIRECTORY_SHORTCUTS as Record<string, string>)[value] ?? value
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw invalid('acme.directory_url', `not a URL nor one of ${Object.keys(DIRECTORY_SHORTCUTS).join(', ')}: ${JSON.stringify(value)}`)
  }
  if (parsed.protocol !== 'https:') throw invalid('acme.directory_url', `must be https:// (RFC 8555 §6.1), got ${JSON.stringify(value)}`)
  return parsed.href
}

/** Reads acme.ca_file. @throws CertError CERTS_CONFIG_INVALID when unreadable or holding no PEM certificate */
function readCaFile (caFile: string): string {
  let caPem: string
  try {
    caPem = readFileSync(caFile, 'utf8')
  } catch (err) {
    throw invalid('acme.ca_file', `cannot read ${caFile}: ${describeError(err)}`)
  }
  if (splitPemCertificates(caPem).length === 0) throw invalid('acme.ca_file', `${caFile} holds no PEM certificate`)
  return caPem
}

function checkEmail (email: string): void {
  if (email !== '' && !/^[^\s@]+@[^\s@]+$/.test(email)) throw invalid('acme.email', `not an e-mail address: ${JSON.stringify(email)}`)
}

/**
 * Every problem resolveCertOptions would find in the `[acme]` options, each with its key
 * (`acme.directory_url`, `acme.ca_file`, `acme.email`) and message; [] when they are fine.
 * Reads ca_file, writes nothing. For `vmfront check`.
 */
export function acmeOptionProblems (acme: AcmeOptions): Array<{ key: string, message: string }> {
  const problems: Array<{ key: string, message: string }> = []
  const caFile = acme.caFile ?? ''
  const checks: Array<[string, () => unknown]> = [
    ['acme.directory_url', () => resolveDirectoryUrl(acme.directoryUrl)],
    ['acme.ca_file', () => caFile === '' ? undefined : readCaFile(caFile)],
    ['acme.email', () => { checkEmail(acme.email ?? '') }]
  ]
  for (const [key, check] of checks) {
    try {
      check()
    } catch (err) {
      if (!(err instanceof CertError)) throw err
      problems.push({ key, message: err.message.startsWith(`${key}: `) ? err.message.slice(key.length + 2) : err.message })
    }
  }
  return problems
}

/**
 * Validates options once, applies defaults, reads `acme.caFile`, and freezes the result.
 * @throws CertError CERTS_CONFIG_INVALID naming the key
 */
export function resolveCertOptions (options: CertManagerOptions): ResolvedCertOptions {
  if (typeof options.storageDir !== 'string' || options.storageDir === '') throw invalid('storageDir', 'required')
  if (typeof options.policy !== 'function') throw invalid('policy', 'must be a function')
  const acme = options.acme
  const directoryUrl = resolveDirectoryUrl(acme.directoryUrl)
  const caFile = acme.caFile === '' ? undefined : acme.caFile
  const caPem = caFile === undefined ? undefined : readCaFile(caFile)
  const email = acme.email ?? ''
  checkEmail(email)
  const renewRatio = options.renewRatio ?? 1 / 3
  if (!(renewRatio > 0 && renewRatio < 1)) throw invalid('renewRatio', `must be between 0 and 1, got ${renewRatio}`)
  const keyType = options.keyType ?? 'ec-p256'
  if (!KEY_TYPES.includes(keyType)) throw invalid('keyType', `must be one of ${KEY_TYPES.join(', ')}`)
  const backoffBaseMs = positive('backoffBaseMs', options.backoffBaseMs, 120_000)
  const backoffMaxMs = positive('backoffMaxMs', options.backoffMaxMs, 3_600_000)
  if (backoffMaxMs < backoffBaseMs) throw invalid('backoffMaxMs', 'must be >= backoffBaseMs')
  return Object.freeze({
    storageDir: options.storageDir,
    acme: Object.freeze({
      enabled: acme.enabled === true,
      directoryUrl,
      email,
      caFile,
      caPem,
      profile: acme.profile ?? ''
    }),
    extraCertsFile: options.extraCertsFile === '' ? undefined : options.extraCertsFile,
    logger: options.logger ?? NOOP_LOGGER,
    renewRatio,
    keyType,
    maintenanceIntervalMs: positive('maintenanceIntervalMs', options.maintenanceIntervalMs, 300_000),
    backoffBaseMs,
    backoffMaxMs,
    maxConcurrentOrders: Math.floor(positive('maxConcurrentOrders', options.maxConcurrentOrders, 4)),
    acmePollMinMs: positive('acmePollMinMs', options.acmePollMinMs, 1000),
    acmePollMaxMs: positive('acmePollMaxMs', options.acmePollMaxMs, 10_000),
    acmePollAttempts: Math.floor(positive('acmePollAttempts', options.acmePollAttempts, 10)),
    acmeHttpTimeoutMs: positive('acmeHttpTimeoutMs', options.acmeHttpTimeoutMs, 30_000)
  })
}
