/**
 * @module test/certs/acme-shim
 * A transparent HTTPS front for Pebble that records every ACME request (decoding JWS payloads)
 * and can add what Debian's Pebble 2.4 lacks: a `renewalInfo` endpoint (RFC 9773) and
 * `meta.profiles`. Requests are forwarded with their Host header unchanged, so Pebble builds its
 * URLs (and checks JWS `url`s) against the shim's address: the ACME path stays real end to end.
 */
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { issueTestCert, type Pebble } from '../helpers/pebble.ts'

/** One recorded request. */
export interface ShimRequest {
  method: string
  path: string
  /** Decoded JWS payload of a POST (`null` for POST-as-GET). */
  payload?: unknown
}

/** What the shim answers at /renewal-info/<certId>. */
export interface ShimAri {
  (certId: string): { start: Date, end: Date, retryAfterSeconds?: number }
}

export interface AcmeShim {
  readonly directoryUrl: string
  readonly requests: ShimRequest[]
  /** Certificate IDs asked for at the renewalInfo endpoint. */
  readonly ariLookups: string[]
  /** newOrder payloads seen. */
  orders (): unknown[]
  close (): Promise<void>
}

/** Starts the shim in front of `pebble` on 127.0.0.1 (port 0). */
export async function startAcmeShim (pebble: Pebble, opts: { ari?: ShimAri, profiles?: Record<string, string> } = {}): Promise<AcmeShim> {
  const cert = issueTestCert({ issuer: pebble.ca, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] })
  const requests: ShimRequest[] = []
  const ariLookups: string[] = []
  let base = ''

  const server = https.createServer({ key: cert.keyPem, cert: cert.certPem }, (req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => { chunks.push(c) })
    req.on('end', () => {
      const body = Buffer.concat(chunks)
      const path = req.url ?? '/'
      const rec: ShimRequest = { method: req.method ?? 'GET', path }
      if (req.method === 'POST') {
        try {
          const jws = JSON.parse(body.toString()) as { payload: string }
          rec.payload = jws.payload === '' ? null : JSON.parse(Buffer.from(jws.payload, 'base64url').toString())
        } catch { /* not JWS */ }
      }
      requests.push(rec)
      if (path.startsWith('/renewal-info/') && opts.ari !== undefined) {
        const id = decodeURIComponent(path.slice('/renewal-info/'.length))
        ariLookups.push(id)
        const w = opts.ari(id)
        res.writeHead(200, { 'content-type': 'application/json', 'retry-after': String(w.retryAfterSeconds ?? 3600) })
        res.end(JSON.stringify({ suggestedWindow: { start: w.start.toISOString(), end: w.end.toISOString() } }))
        return
      }
      const upstream = https.request({
        host: '127.0.0.1',
        port: pebble.port,
        method: req.method,
        path,
        headers: req.headers, // Host unchanged: Pebble answers with the shim's URLs
        ca: pebble.caPem,
        servername: 'localhost'
      }, (up) => {
        const upChunks: Buffer[] = []
        up.on('data', (c: Buffer) => { upChunks.push(c) })
        up.on('end', () => {
          let out = Buffer.concat(upChunks)
          if (path === '/dir') {
            const dir = JSON.parse(out.toString()) as Record<string, unknown> & { meta?: Record<string, unknown> }
            if (opts.ari !== undefined) dir.renewalInfo = `${base}/renewal-info/`
            if (opts.profiles !== undefined) dir.meta = { ...dir.meta, profiles: opts.profiles }
            out = Buffer.from(JSON.stringify(dir))
          }
          const headers = { ...up.headers, 'content-length': String(out.length) }
          delete headers['transfer-encoding']
          delete headers.connection
          res.writeHead(up.statusCode ?? 502, headers)
          res.end(out)
        })
      })
      upstream.on('error', (err) => { res.writeHead(502); res.end(String(err)) })
      upstream.end(body)
    })
  })
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  base = `https://127.0.0.1:${(server.address() as AddressInfo).port}`
  return {
    directoryUrl: `${base}/dir`,
    requests,
    ariLookups,
    orders: () => requests.filter((r) => r.method === 'POST' && r.path === '/order-plz').map((r) => r.payload),
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
    }
  }
}
