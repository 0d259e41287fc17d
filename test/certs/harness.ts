/**
 * @module test/certs/harness
 * Shared test plumbing for certs/: a Pebble environment with a real HTTP-01 server, a real
 * HTTP/2+HTTP/1.1 TLS server on the manager's SNICallback, TLS probes, event recorders, loggers.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import http from 'node:http'
import http2 from 'node:http2'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import tls from 'node:tls'
import { createCertManager, type CertManager, type CertManagerOptions, type CertificateEvent, type OrderEvent } from '../../certs/index.ts'
import { pollUntil, startPebble, type Pebble } from '../helpers/pebble.ts'

/** Minimal view of tap's Test that the helpers need. */
interface T { teardown (fn: () => unknown): void }

/** A temporary directory removed at teardown. */
export function tmpDir (t: T, prefix = 'vmfront-certs-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  return dir
}

/** A logger that keeps its lines (and prints nothing). */
export function memoryLogger (): { lines: Array<{ level: string, msg: string, fields?: Record<string, unknown> }>, logger: NonNullable<CertManagerOptions['logger']> } {
  const lines: Array<{ level: string, msg: string, fields?: Record<string, unknown> }> = []
  const at = (level: string) => (msg: string, fields?: Record<string, unknown>) => { lines.push({ level, msg, fields }) }
  return { lines, logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') } }
}

/** Pebble plus the HTTP-01 server it validates against (which asks every registered manager). */
export interface AcmeEnv {
  readonly pebble: Pebble
  readonly httpPort: number
  /** Managers whose handleHttpChallenge the HTTP server consults. */
  readonly responders: Set<CertManager>
}

/** Starts the HTTP-01 server and Pebble (issuing certificates valid `validitySeconds`). */
export async function startAcmeEnv (t: T, opts: { validitySeconds?: number } = {}): Promise<AcmeEnv> {
  const responders = new Set<CertManager>()
  const server = http.createServer((req, res) => {
    for (const m of responders) if (m.handleHttpChallenge(req, res)) return
    res.writeHead(404)
    res.end()
  })
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  t.teardown(() => { server.closeAllConnections(); server.close() })
  const httpPort = (server.address() as AddressInfo).port
  const pebble = await startPebble({ httpPort, certificateValidityPeriod: opts.validitySeconds })
  t.teardown(async () => { await pebble.stop() })
  return { pebble, httpPort, responders }
}

/** Test-speed tunables: fast polls and short backoffs. */
export const FAST = {
  acmePollMinMs: 50,
  acmePollMaxMs: 500,
  acmeHttpTimeoutMs: 5000,
  backoffBaseMs: 200,
  backoffMaxMs: 1000,
  maintenanceIntervalMs: 100
} as const

/** Creates a manager on `env` (or on `directoryUrl`), registers it for HTTP-01, stops it at teardown. */
export function newManager (t: T, env: AcmeEnv, opts: Partial<CertManagerOptions> & { storageDir: string, directoryUrl?: string, policy?: (d: string) => boolean }): CertManager {
  const { directoryUrl, ...rest } = opts
  const m = createCertManager({
    ...FAST,
    policy: () => true,
    ...rest,
    acme: { enabled: true, directoryUrl: directoryUrl ?? env.pebble.directoryUrl, email: 'ops@example.com', caFile: env.pebble.caFile, ...opts.acme }
  })
  env.responders.add(m)
  t.teardown(async () => { env.responders.delete(m); await m.stop() })
  return m
}

/** An HTTP/2 (+HTTP/1.1) TLS server on 127.0.0.1:0 that picks certificates with `m.sniCallback`. */
export async function startTlsServer (t: T, m: CertManager, defaultCert?: { key: string, cert: string }): Promise<number> {
  const server = http2.createSecureServer({
    allowHTTP1: true,
    ...(defaultCert ?? m.defaultSecureContextOptions()),
    SNICallback: m.sniCallback
  }, (_req, res) => { res.end('ok') })
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  t.teardown(() => { server.close() })
  return (server.address() as AddressInfo).port
}

/** What a client saw in one handshake. */
export interface Handshake {
  serial: string
  issuer: string
  subject: string
  keyType: string
  authorized: boolean
  authorizationError: string | undefined
  alpn: string | false | null
  protocol: string | null
}

/** Connects with SNI `servername`, verifying against `ca` when given, and reports the certificate. */
export async function handshake (port: number, servername: string, opts: { ca?: string, maxVersion?: tls.SecureVersion } = {}): Promise<Handshake> {
  return await new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: '127.0.0.1',
      port,
      servername,
      ca: opts.ca,
      rejectUnauthorized: false,
      ALPNProtocols: ['h2', 'http/1.1'],
      ...(opts.maxVersion === undefined ? {} : { maxVersion: opts.maxVersion })
    }, () => {
      const x = socket.getPeerX509Certificate()
      const result: Handshake = {
        serial: (x?.serialNumber ?? '').toLowerCase(),
        issuer: x?.issuer ?? '',
        subject: x?.subject ?? '',
        keyType: x?.publicKey.asymmetricKeyType ?? '',
        authorized: socket.authorized,
        authorizationError: socket.authorizationError === undefined ? undefined : String(socket.authorizationError),
        alpn: socket.alpnProtocol,
        protocol: socket.getProtocol()
      }
      socket.destroy()
      resolve(result)
    })
    socket.setTimeout(10_000, () => { socket.destroy(new Error('handshake timeout')) })
    socket.on('error', reject)
  })
}

/** Records a manager's events and waits for them (bounded). */
export function recordEvents (m: CertManager): {
  orders: OrderEvent[]
  certificates: CertificateEvent[]
  waitForOrder: (pred: (e: OrderEvent) => boolean, timeoutMs?: number) => Promise<OrderEvent>
} {
  const orders: OrderEvent[] = []
  const certificates: CertificateEvent[] = []
  m.on('order', (e) => { orders.push(e) })
  m.on('certificate', (e) => { certificates.push(e) })
  return {
    orders,
    certificates,
    async waitForOrder (pred, timeoutMs = 20_000) {
      let found: OrderEvent | undefined
      await pollUntil(() => { found = orders.find(pred); return found !== undefined }, timeoutMs, 'an order event')
      return found as OrderEvent
    }
  }
}

/** Serial (lower-case hex, as node's X509Certificate prints it, without leading zeros) of a status row. */
export function statusSerial (m: CertManager, domain: string): string | undefined {
  const row = m.status().find((r) => r.domain === domain)
  return row === undefined ? undefined : row.serial.replace(/^(00)+/, '')
}
