/**
 * @module proxy/shared-certs
 * One ACME order per domain when several workers serve (SPEC §12). The primary's
 * certificate manager is the only one that talks to the CA; a worker's manager has
 * an issuer that asks the primary (which waits for an order already running, or
 * hands over the certificate it holds), and a challenge store the primary fills, so
 * the CA's HTTP-01 request is answered by whichever worker it reaches. When the
 * primary obtains a certificate it tells every worker, and each fetches it at once:
 * a new certificate is served everywhere within one round trip, not at each
 * worker's first handshake.
 */
import { createChallengeStore, describeError, type CertManager, type ChallengeStore, type Issuer } from '../certs/index.ts'
import type { IpcPeer } from './worker-ipc.ts'

/** Worker side: the issuer of a worker's manager. */
export function createRemoteIssuer (key: string, primary: IpcPeer): Issuer {
  return {
    key,
    async init () {},
    async issue (request) {
      return await primary.request<{ chainPem: string, keyPem: string }>('acme.issue', { domain: request.domain })
    },
    // Renewal windows are the primary's business: its own renewal loop asks the CA.
    async renewalInfo () { return undefined }
  }
}

/** Worker side: the challenge store the primary's notices fill. */
export function createSharedChallengeStore (primary: IpcPeer): ChallengeStore {
  const store = createChallengeStore()
  primary.handle('acme.challenge', (body) => {
    const { token, keyAuthorization } = body as { token: string, keyAuthorization: string | null }
    if (keyAuthorization === null) store.delete(token)
    else store.set(token, keyAuthorization)
  })
  return store
}

/** Worker side: fetches a certificate the primary says is new (its manager checks the policy). */
export function followPrimaryCertificates (certs: CertManager, primary: IpcPeer, onError: (domain: string, reason: string) => void): void {
  primary.handle('acme.certificate', (body) => {
    const domain = (body as { domain: string }).domain
    certs.ensure(domain).catch((err: unknown) => { onError(domain, describeError(err)) })
  })
}

/**
 * Primary side: a challenge store that also gives every worker each token
 * (before the issuer tells the CA to look: IPC on one host beats the CA's request).
 */
export function createBroadcastChallengeStore (broadcast: (op: string, body: unknown) => void): ChallengeStore & { replay: (peer: IpcPeer) => void } {
  const store = createChallengeStore()
  const live = new Map<string, string>()
  return {
    set (token, keyAuthorization) {
      live.set(token, keyAuthorization)
      store.set(token, keyAuthorization)
      broadcast('acme.challenge', { token, keyAuthorization })
    },
    delete (token) {
      live.delete(token)
      store.delete(token)
      broadcast('acme.challenge', { token, keyAuthorization: null })
    },
    handle: (req, res) => store.handle(req, res),
    // A worker started while an order runs (a replacement) learns its tokens too.
    replay (peer) {
      for (const [token, keyAuthorization] of live) peer.notify('acme.challenge', { token, keyAuthorization })
    }
  }
}

/** Primary side: answers a worker's issuer. */
export function serveCertificates (certs: CertManager, worker: IpcPeer): void {
  worker.handle('acme.issue', async (body) => {
    const domain = (body as { domain: string }).domain
    await certs.ensure(domain)
    const pem = certs.servedPem(domain)
    if (pem === undefined) throw new Error(`no certificate for ${domain} after the order`)
    return { chainPem: pem.chainPem, keyPem: pem.keyPem }
  })
}
