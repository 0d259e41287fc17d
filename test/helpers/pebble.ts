/**
 * @module test/helpers/pebble
 * Starts Let's Encrypt's test CA (Debian `pebble` + `pebble-challtestsrv`) on loopback for tests,
 * and a small node-forge test PKI (CA + leaf certificates) used for Pebble's own HTTPS listener
 * and for user-certificate fixtures.
 *
 * Usage:
 * ```ts
 * const http = await listenHttp01(handler)          // the server Pebble validates HTTP-01 against
 * const pebble = await startPebble({ httpPort: http.port, certificateValidityPeriod: 30 })
 * t.teardown(() => pebble.stop())
 * // acme: { directoryUrl: pebble.directoryUrl, caFile: pebble.caFile }; verify served certs with await pebble.rootPem()
 * ```
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import https from 'node:https'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import forge from 'node-forge'

/** A PEM key pair and certificate. */
export interface TestCert {
  keyPem: string
  certPem: string
}

/** Options for {@link issueTestCert}. */
export interface TestCertOptions {
  /** DNS names (SAN); the first is also the CN. */
  dnsNames?: string[]
  ipAddresses?: string[]
  /** Signing CA; absent = self-signed. */
  issuer?: TestCert
  isCa?: boolean
  notBefore?: Date
  notAfter?: Date
  commonName?: string
}

function rsaKeyPem (): string {
  // node:crypto generates the key (fast, native); forge only builds and signs the certificate.
  return generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
}

/** Issues an RSA test certificate with node-forge (a CA, a leaf signed by `issuer`, or self-signed). */
export function issueTestCert (opts: TestCertOptions = {}): TestCert {
  const keyPem = rsaKeyPem()
  const key = forge.pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey
  const cert = forge.pki.createCertificate()
  cert.publicKey = forge.pki.rsa.setPublicKey(key.n, key.e)
  cert.serialNumber = '01' + randomBytes(8).toString('hex')
  cert.validity.notBefore = opts.notBefore ?? new Date(Date.now() - 60_000)
  cert.validity.notAfter = opts.notAfter ?? new Date(Date.now() + 365 * 86400_000)
  const cn = opts.commonName ?? opts.dnsNames?.[0] ?? 'vmfront test CA'
  cert.setSubject([{ name: 'commonName', value: cn }])
  const exts: object[] = [{ name: 'subjectKeyIdentifier' }]
  if (opts.isCa === true) {
    exts.push({ name: 'basicConstraints', cA: true, critical: true }, { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true })
  } else {
    exts.push({ name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true })
    const alt = [
      ...(opts.dnsNames ?? []).map((value) => ({ type: 2, value })),
      ...(opts.ipAddresses ?? []).map((ip) => ({ type: 7, ip }))
    ]
    if (alt.length > 0) exts.push({ name: 'subjectAltName', altNames: alt })
  }
  let signer = key
  if (opts.issuer !== undefined) {
    const ca = forge.pki.certificateFromPem(opts.issuer.certPem)
    cert.setIssuer(ca.subject.attributes)
    exts.push({ name: 'authorityKeyIdentifier', keyIdentifier: ca.generateSubjectKeyIdentifier().getBytes() })
    signer = forge.pki.privateKeyFromPem(opts.issuer.keyPem) as forge.pki.rsa.PrivateKey
  } else {
    cert.setIssuer(cert.subject.attributes)
  }
  cert.setExtensions(exts)
  cert.sign(signer, forge.md.sha256.create())
  return { keyPem, certPem: forge.pki.certificateToPem(cert) }
}

/** A free TCP port on 127.0.0.1 (bind to 0, read, close). */
export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port
      srv.close(() => { resolve(port) })
    })
  })
}

/** Options for {@link startPebble}. */
export interface PebbleOptions {
  /** Port Pebble's VA connects to for HTTP-01 (your test HTTP server on 127.0.0.1). */
  httpPort: number
  /** Lifetime of issued certificates in seconds (Pebble's default is about 5 years). */
  certificateValidityPeriod?: number
  /** Extra environment for pebble (defaults: PEBBLE_VA_NOSLEEP=1, PEBBLE_WFE_NONCEREJECT=0, PEBBLE_AUTHZREUSE=0). */
  env?: Record<string, string>
  /** Bound on the readiness poll, default 15 s. */
  readyTimeoutMs?: number
}

/** A running Pebble. `stop()` then `start()` restarts it on the same ports (with a new CA). */
export interface Pebble {
  /** ACME directory, `https://127.0.0.1:<port>/dir`. */
  readonly directoryUrl: string
  /** PEM file of the CA that signed Pebble's HTTPS listener certificate (pass as `caFile`). */
  readonly caFile: string
  readonly caPem: string
  /** That CA with its key, to issue more loopback listener certificates trusted by `caFile`. */
  readonly ca: TestCert
  readonly port: number
  readonly managementPort: number
  readonly dnsPort: number
  /** Root of the certificates Pebble issues (regenerated at every Pebble start). */
  rootPem (): Promise<string>
  /** Everything pebble and challtestsrv wrote, for failure diagnostics. */
  logs (): string
  /** Starts pebble again after `stop()` (same ports and config). */
  start (): Promise<void>
  /** Stops pebble only (challtestsrv keeps answering DNS). */
  stopPebble (): Promise<void>
  /** Stops both processes and removes the temporary directory. */
  stop (): Promise<void>
}

async function killAndWait (child: ChildProcess | undefined): Promise<void> {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => { child.once('exit', () => { resolve() }) })
  if (child.pid !== undefined) process.kill(child.pid, 'SIGTERM')
  const timer = setTimeout(() => { if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, 'SIGKILL') }, 3000)
  await exited
  clearTimeout(timer)
}

/** GET over HTTPS trusting `ca`; resolves with status and body. */
export async function httpsGet (url: string, ca: string): Promise<{ status: number, body: string }> {
  return await new Promise((resolve, reject) => {
    const req = https.get(url, { ca, servername: 'localhost', timeout: 5000 }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { body += c })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body }) })
      res.on('error', reject)
    })
    req.on('timeout', () => { req.destroy(new Error(`timeout GET ${url}`)) })
    req.on('error', reject)
  })
}

/** Polls `probe` every 50 ms until it resolves true or `timeoutMs` passes. */
export async function pollUntil (probe: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      if (await probe()) return
    } catch { /* not ready yet */ }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** Starts pebble-challtestsrv (DNS answering 127.0.0.1 for every name) and pebble on loopback. */
export async function startPebble (opts: PebbleOptions): Promise<Pebble> {
  const dir = mkdtempSync(join(tmpdir(), 'vmfront-pebble-'))
  const ca = issueTestCert({ isCa: true, commonName: 'vmfront pebble listener CA' })
  const listener = issueTestCert({ issuer: ca, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] })
  const caFile = join(dir, 'ca.pem')
  writeFileSync(caFile, ca.certPem)
  writeFileSync(join(dir, 'listener.pem'), listener.certPem)
  writeFileSync(join(dir, 'listener.key'), listener.keyPem, { mode: 0o600 })
  const [port, managementPort, dnsPort, challMgmtPort, tlsPort] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()])
  const config = {
    pebble: {
      listenAddress: `127.0.0.1:${port}`,
      managementListenAddress: `127.0.0.1:${managementPort}`,
      certificate: join(dir, 'listener.pem'),
      privateKey: join(dir, 'listener.key'),
      httpPort: opts.httpPort,
      tlsPort,
      ocspResponderURL: '',
      externalAccountBindingRequired: false,
      ...(opts.certificateValidityPeriod === undefined ? {} : { certificateValidityPeriod: opts.certificateValidityPeriod })
    }
  }
  const configFile = join(dir, 'pebble-config.json')
  writeFileSync(configFile, JSON.stringify(config, null, 2))
  let output = ''
  const capture = (name: string, child: ChildProcess): void => {
    child.stdout?.on('data', (d: Buffer) => { output += `[${name}] ${d.toString()}` })
    child.stderr?.on('data', (d: Buffer) => { output += `[${name}] ${d.toString()}` })
  }

  // challtestsrv: DNS only (the HTTP-01/TLS-ALPN responders are disabled; our own server answers HTTP-01).
  const chall = spawn('pebble-challtestsrv', [
    '-dns01', `127.0.0.1:${dnsPort}`, '-http01', '', '-https01', '', '-tlsalpn01', '',
    '-management', `127.0.0.1:${challMgmtPort}`, '-defaultIPv4', '127.0.0.1', '-defaultIPv6', ''
  ], { stdio: ['ignore', 'pipe', 'pipe'] })
  capture('challtestsrv', chall)
  let pebbleProc: ChildProcess | undefined
  const readyTimeoutMs = opts.readyTimeoutMs ?? 15_000
  const directoryUrl = `https://127.0.0.1:${port}/dir`

  const startPebbleProcess = async (): Promise<void> => {
    pebbleProc = spawn('pebble', ['-config', configFile, '-dnsserver', `127.0.0.1:${dnsPort}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0', PEBBLE_AUTHZREUSE: '0', ...opts.env }
    })
    capture('pebble', pebbleProc)
    const proc = pebbleProc
    await pollUntil(async () => {
      if (proc.exitCode !== null) throw new Error('pebble exited')
      return (await httpsGet(directoryUrl, ca.certPem)).status === 200 &&
        (await httpsGet(`https://127.0.0.1:${managementPort}/roots/0`, ca.certPem)).status === 200
    }, readyTimeoutMs, `pebble at ${directoryUrl}\n${output}`)
  }

  // If the test process dies without running its teardown, do not leave CA processes behind.
  const killOnExit = (): void => {
    for (const child of [pebbleProc, chall]) {
      if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) {
        try { process.kill(child.pid, 'SIGKILL') } catch { /* already gone */ }
      }
    }
  }
  process.on('exit', killOnExit)
  const stopAll = async (): Promise<void> => {
    process.off('exit', killOnExit)
    await Promise.all([killAndWait(pebbleProc), killAndWait(chall)])
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    await startPebbleProcess()
  } catch (err) {
    await stopAll()
    throw err
  }
  return {
    directoryUrl,
    caFile,
    caPem: ca.certPem,
    ca,
    port,
    managementPort,
    dnsPort,
    async rootPem () {
      const res = await httpsGet(`https://127.0.0.1:${managementPort}/roots/0`, ca.certPem)
      if (res.status !== 200) throw new Error(`pebble /roots/0 answered ${res.status}`)
      return res.body
    },
    logs: () => output,
    start: startPebbleProcess,
    stopPebble: async () => { await killAndWait(pebbleProc) },
    stop: stopAll
  }
}
