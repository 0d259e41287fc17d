/**
 * @module certs/acme-issuer
 * The production Issuer: acme-client against an ACME directory, HTTP-01 through the challenge
 * store, the account key persisted in Storage, ARI lookups, `profile` and `replaces` in orders.
 */
import { createPrivateKey } from 'node:crypto'
import https from 'node:https'
import { rootCertificates } from 'node:tls'
// Loaded on first use: acme-client (with axios and its crypto) costs ~35 MiB of memory,
// which a process that never orders (a proxy's worker, ACME off) should not carry.
import type * as acme from 'acme-client'
import { parseRenewalInfo, type RenewalWindow } from './ari.ts'
import type { CertLogger } from './config.ts'
import { CertError, describeError, errorMessage, storageFailureParts } from './errors.ts'
import type { ChallengeStore } from './http01.ts'
import { buildOrderPayload, type IssuedCertificate, type Issuer, type IssueRequest } from './issuer.ts'
import type { Storage, StorageKeys } from './storage.ts'
import { createCsrPem, generatePrivateKeyPem, type KeyType } from './x509.ts'

/** Dependencies and settings of {@link createAcmeIssuer}. */
export interface AcmeIssuerOptions {
  directoryUrl: string
  issuerKey: string
  email: string
  /** Extra CA (PEM) trusted for the directory, on top of Node's bundled roots. */
  caPem: string | undefined
  profile: string
  keyType: KeyType
  storage: Storage
  keys: StorageKeys
  challenges: ChallengeStore
  logger: CertLogger
  pollMinMs: number
  pollMaxMs: number
  pollAttempts: number
  httpTimeoutMs: number
}

/** The part of acme-client's internal HttpClient we rely on (acme-client 5.4; checked at runtime). */
interface AcmeHttp {
  request (url: string, method: string, opts?: Record<string, unknown>): Promise<{ status: number, data: unknown, headers: Record<string, string | undefined> }>
  getDirectory (): Promise<AcmeDirectory>
}
interface AcmeDirectory {
  renewalInfo?: string
  meta?: { profiles?: Record<string, unknown> }
}

/**
 * Gives one acme-client instance its own HTTPS agent, request timeout and no HTTP-level retries.
 * acme-client shares one global axios instance, so setting `acme.axios.defaults` would leak into
 * every other client in the process; wrapping this instance's request method keeps it local.
 * Retries are off because acme-client's retry (5 attempts, 5 s·n apart) would hold a failing
 * order for over a minute; the manager's per-domain backoff retries instead.
 */
function configureHttp (client: acme.Client, agent: https.Agent, timeoutMs: number): AcmeHttp {
  const http = (client as unknown as { http?: AcmeHttp }).http
  if (http === undefined || typeof http.request !== 'function' || typeof http.getDirectory !== 'function') {
    throw new CertError('CERTS_CONFIG_INVALID', 'unsupported acme-client version: no http client on the instance')
  }
  const request = http.request.bind(http)
  http.request = async (url, method, opts = {}) => {
    try {
      return await request(url, method, { ...opts, httpsAgent: agent, timeout: timeoutMs, retryAttempt: Number.MAX_SAFE_INTEGER })
    } catch (err) {
      // An HTTP answer (4xx/5xx, an ACME problem document) is the CA's word: pass it on.
      if ((err as { response?: unknown }).response !== undefined) throw err
      // No answer at all: acme-client loses the network error (its retry interceptor reads
      // `response.config` of an undefined response), so ask the server ourselves, once.
      throw await unreachable(url, agent, timeoutMs, err)
    }
  }
  return http
}

/** Words for why a TLS or TCP connection failed, as an operator fixes it. */
const NETWORK_REASONS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  ENOTFOUND: 'host name not found (DNS)',
  EAI_AGAIN: 'DNS lookup failed (temporary)',
  ETIMEDOUT: 'timed out',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'its TLS certificate is not trusted (acme.ca_file names an extra CA)',
  SELF_SIGNED_CERT_IN_CHAIN: 'its TLS certificate is not trusted (acme.ca_file names an extra CA)',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'its TLS certificate is self-signed and not trusted (acme.ca_file names an extra CA)',
  CERT_HAS_EXPIRED: 'its TLS certificate has expired',
  ERR_TLS_CERT_ALTNAME_INVALID: 'its TLS certificate does not cover its host name'
}

/**
 * Probes `url` to learn why acme-client got no answer: "cannot reach the ACME server URL:
 * connection refused". A plain Error: the order that made the request wraps it with its domain.
 */
async function unreachable (url: string, agent: https.Agent, timeoutMs: number, original: unknown): Promise<Error> {
  const reason = await new Promise<string | undefined>((resolve) => {
    const req = https.get(url, { agent, timeout: timeoutMs }, (res) => {
      res.resume()
      resolve(undefined)
    })
    req.on('timeout', () => { req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })) })
    req.on('error', (err: Error & { code?: string }) => { resolve(NETWORK_REASONS[err.code ?? ''] ?? describeError(err)) })
  })
  const what = reason ?? `no usable answer (${errorMessage(original)})`
  return new Error(`cannot reach the ACME server ${url}: ${what}`, { cause: original })
}

/** Creates the acme-client Issuer. Nothing touches the network until `init()`/`issue()`. */
export function createAcmeIssuer (opts: AcmeIssuerOptions): Issuer {
  const agent = new https.Agent({ keepAlive: true, ca: opts.caPem === undefined ? undefined : [...rootCertificates, opts.caPem] })
  const log = opts.logger
  let accountKey: Promise<string> | undefined
  let session: { client: acme.Client, http: AcmeHttp, registered: boolean } | undefined
  let profileWarned = false

  // One promise, so concurrent first orders share one load (or one generated key).
  async function loadAccountKey (): Promise<string> {
    accountKey ??= readOrCreateAccountKey()
    try {
      return await accountKey
    } catch (err) {
      accountKey = undefined
      throw err
    }
  }

  /** A worded CertError for a failed account key read or write ("cannot write the ACME account key to /x: no space left on device"). */
  function accountKeyFailure (write: boolean, key: string, err: unknown): CertError {
    const { where, reason } = storageFailureParts(err, key)
    return new CertError('CERTS_STORAGE_FAILED', write ? `cannot write the ACME account key to ${where}: ${reason}` : `cannot read the ACME account key at ${where}: ${reason}`, { cause: err, file: where })
  }

  async function readOrCreateAccountKey (): Promise<string> {
    const stored = await opts.storage.load(opts.keys.accountKey).catch((err: unknown) => { throw accountKeyFailure(false, opts.keys.accountKey, err) })
    if (stored !== undefined) {
      try {
        createPrivateKey(stored)
        return stored.toString()
      } catch (err) {
        const aside = opts.keys.quarantine(opts.keys.accountKey, new Date())
        log.error('stored ACME account key is corrupt, replacing it', { file: opts.keys.accountKey, movedTo: aside, err })
        await opts.storage.store(aside, stored, { secret: true }).catch((e: unknown) => { throw accountKeyFailure(true, aside, e) })
      }
    }
    const pem = await generatePrivateKeyPem('ec-p256')
    // Never use a key we could not keep: every restart would create another account at the CA.
    await opts.storage.store(opts.keys.accountKey, pem, { secret: true }).catch((err: unknown) => { throw accountKeyFailure(true, opts.keys.accountKey, err) })
    log.info('created ACME account key', { issuer: opts.issuerKey })
    return pem
  }

  async function getSession (): Promise<NonNullable<typeof session>> {
    if (session !== undefined) return session
    const { Client } = await import('acme-client')
    const client = new Client({
      directoryUrl: opts.directoryUrl,
      accountKey: await loadAccountKey(),
      backoffAttempts: opts.pollAttempts,
      backoffMin: opts.pollMinMs,
      backoffMax: opts.pollMaxMs
    })
    session = { client, http: configureHttp(client, agent, opts.httpTimeoutMs), registered: false }
    return session
  }

  async function ensureAccount (s: NonNullable<typeof session>): Promise<void> {
    if (s.registered) return
    // newAccount with a known key returns the existing account (RFC 8555 §7.3.1), so this is
    // also how a CA that forgot us (a reset test CA) gets us back.
    await s.client.createAccount({
      termsOfServiceAgreed: true,
      ...(opts.email === '' ? {} : { contact: [`mailto:${opts.email}`] })
    })
    s.registered = true
  }

  function profileFor (dir: AcmeDirectory): string | undefined {
    if (opts.profile === '') return undefined
    const offered = dir.meta?.profiles
    if (offered === undefined) {
      if (!profileWarned) log.warn('the ACME directory advertises no profiles; acme.profile is not sent', { profile: opts.profile })
      profileWarned = true
      return undefined
    }
    if (!Object.hasOwn(offered, opts.profile)) {
      throw new CertError('CERTS_ORDER_FAILED', `acme.profile ${JSON.stringify(opts.profile)} is not offered by the CA (offers: ${Object.keys(offered).join(', ')})`)
    }
    return opts.profile
  }

  async function authorize (client: acme.Client, authz: acme.Authorization): Promise<void> {
    if (authz.status === 'valid') return
    const challenge = authz.challenges.find((c) => c.type === 'http-01')
    if (challenge === undefined) throw new Error(`no http-01 challenge offered for ${authz.identifier.value}`)
    const keyAuthorization = await client.getChallengeKeyAuthorization(challenge)
    opts.challenges.set(challenge.token, keyAuthorization)
    let completed = false
    try {
      // Deliberately no client.verifyChallenge() (what auto() does unless skipChallengeVerification):
      // it fetches http://<domain>/ from this host, which hangs behind NAT without hairpinning and
      // in tests; the CA's own validation is the one that counts.
      await client.completeChallenge(challenge)
      completed = true
      await client.waitForValidStatus(challenge)
    } catch (err) {
      // Release a pending authorization we never answered, as acme-client's auto() does.
      if (!completed) await client.deactivateAuthorization(authz).catch(() => undefined)
      throw err
    } finally {
      opts.challenges.delete(challenge.token)
    }
  }

  return {
    key: opts.issuerKey,
    async init () {
      await loadAccountKey()
    },
    async issue (request: IssueRequest): Promise<IssuedCertificate> {
      const { domain } = request
      const s = await getSession()
      try {
        await ensureAccount(s)
        const dir = await s.http.getDirectory()
        // RFC 9773 §5: send `replaces` only to a CA that offers ARI.
        const replaces = dir.renewalInfo === undefined ? undefined : request.replaces
        const payload = buildOrderPayload(domain, { profile: profileFor(dir), replaces })
        let order: acme.Order
        try {
          order = await s.client.createOrder(payload as Parameters<acme.Client['createOrder']>[0])
        } catch (err) {
          if (payload.replaces === undefined) throw err
          // e.g. 409 alreadyReplaced: the certificate was replaced already; a plain order still works.
          log.warn('order with replaces refused, ordering without it', { domain, err })
          order = await s.client.createOrder(buildOrderPayload(domain, { profile: payload.profile }) as Parameters<acme.Client['createOrder']>[0])
        }
        for (const authz of await s.client.getAuthorizations(order)) await authorize(s.client, authz)
        const keyPem = await generatePrivateKeyPem(opts.keyType)
        const finalized = await s.client.finalizeOrder(order, await createCsrPem(domain, keyPem))
        const chainPem = await s.client.getCertificate(finalized)
        return { chainPem, keyPem }
      } catch (err) {
        // Start over with a fresh client next time: re-registers if the CA lost the account.
        session = undefined
        if (err instanceof CertError) throw err
        throw new CertError('CERTS_ORDER_FAILED', `ordering a certificate for ${domain}: ${errorMessage(err)}`, { cause: err, domain })
      }
    },
    async renewalInfo (certId: string): Promise<RenewalWindow | undefined> {
      const s = await getSession()
      const dir = await s.http.getDirectory()
      if (dir.renewalInfo === undefined) return undefined
      const res = await s.http.request(`${dir.renewalInfo.replace(/\/+$/, '')}/${certId}`, 'get')
      if (res.status !== 200) throw new CertError('CERTS_ARI_INVALID', `renewalInfo for ${certId} answered HTTP ${res.status}`)
      return parseRenewalInfo(res.data, res.headers['retry-after'], Date.now())
    },
    close () {
      agent.destroy()
    }
  }
}
