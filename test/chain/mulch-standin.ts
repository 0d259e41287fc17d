/**
 * A stand-in for mulch-proxy (1.18.7, OnitiFR/mulch e7b9416) in chain mode, as
 * observed on the wire (/work/shared/mulch/README.md) and read in its source
 * (cmd/mulch-proxy/api_server.go, proxy.go, app.go, domain_database.go):
 *
 * - child: `POST <parent>/domains` with `Mulch-PSK` and `Content-Type:
 *   application/json`, body `{"Domains":[{"Domain","RateProfile"}],"ForwardTo"}`;
 *   serves HTTP/1.1 only (no h2c); a request whose `Mulch-PSK` is the PSK is its
 *   parent's: the header is deleted and X-Forwarded-For / X-Real-Ip are kept;
 *   anyone else gets `X-Real-Ip: <peer>`. Go's ReverseProxy then appends the peer
 *   to X-Forwarded-For.
 * - parent: the chain API (`/domains` 200 `"OK"`, `/domains/conflicts` JSON array,
 *   403 `Forbidden` for a wrong PSK, Go's 404 elsewhere), and a proxy that forwards
 *   chained domains over HTTP/1.1 with `Mulch-PSK`, `X-Real-Ip: <client>` and the
 *   client appended to X-Forwarded-For.
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'

interface Teardown { teardown (fn: () => unknown): void }

type Headers = http.IncomingHttpHeaders

/** Go's http.Error. */
function goError (res: http.ServerResponse, message: string, status: number): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'x-content-type-options': 'nosniff' })
  res.end(`${message}\n`)
}

async function listen (t: Teardown, server: http.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => { resolve() }) }))
  return (server.address() as AddressInfo).port
}

function peerIp (req: http.IncomingMessage): string {
  return (req.socket.remoteAddress ?? '').replace(/^::ffff:/, '')
}

/** httputil.ReverseProxy to `origin`: hop-by-hop dropped, the peer appended to X-Forwarded-For. */
function reverseProxy (req: http.IncomingMessage, res: http.ServerResponse, origin: string, headers: Headers): void {
  const out: Headers = { ...headers }
  delete out.connection
  const prior = out['x-forwarded-for']
  out['x-forwarded-for'] = prior === undefined ? peerIp(req) : `${String(prior)}, ${peerIp(req)}`
  const url = new URL(origin)
  const up = http.request({ host: url.hostname, port: url.port, method: req.method, path: req.url, headers: out }, (upRes) => {
    res.writeHead(upRes.statusCode ?? 502, upRes.headers)
    upRes.pipe(res)
  })
  up.on('error', (err) => { goError(res, err.message, 502) })
  req.pipe(up)
}

/** What a Mulch process received, for the assertions. */
export interface Seen { method?: string, url?: string, headers: Headers, httpVersion: string }

export interface MulchChild {
  port: number
  url: string
  /** Requests its proxy listener received. */
  seen: Seen[]
  /** TCP connections its proxy listener accepted. */
  connections (): number
  /** Sends `POST /domains` (what mulch-proxy does at start and on SIGHUP). */
  register (domains: Array<{ Domain: string, RateProfile?: string }>, psk?: string): Promise<{ status: number, body: string, contentType: string | undefined }>
  conflicts (domains: string[], psk?: string): Promise<{ status: number, body: string }>
}

/** Starts a mulch-proxy child stand-in serving `routes` (domain → VM origin). */
export async function startMulchChild (t: Teardown, options: { parentApi: string, psk: string, routes: Record<string, string> }): Promise<MulchChild> {
  const seen: Seen[] = []
  const server = http.createServer((req, res) => {
    seen.push({ method: req.method, url: req.url, headers: { ...req.headers }, httpVersion: req.httpVersion })
    const host = (req.headers.host ?? '').split(':')[0].toLowerCase()
    const fromParent = req.headers['mulch-psk'] === options.psk
    const headers: Headers = { ...req.headers }
    if (fromParent) delete headers['mulch-psk']
    else headers['x-real-ip'] = peerIp(req)
    const target = options.routes[host]
    if (target === undefined) { goError(res, `domain ${host} not found`, 500); return }
    reverseProxy(req, res, target, headers)
  })
  let connections = 0
  server.on('connection', () => { connections++ })
  const port = await listen(t, server)
  const url = `http://127.0.0.1:${port}`
  const post = async (path: string, body: unknown, psk: string): Promise<{ status: number, body: string, contentType: string | undefined }> => {
    const res = await fetch(`${options.parentApi}${path}`, { method: 'POST', headers: { 'Content-Type': 'application/json', 'Mulch-PSK': psk }, body: JSON.stringify(body) })
    return { status: res.status, body: await res.text(), contentType: res.headers.get('content-type') ?? undefined }
  }
  return {
    port,
    url,
    seen,
    connections: () => connections,
    register: (domains, psk = options.psk) => post('/domains', { Domains: domains.map((d) => ({ Domain: d.Domain, RateProfile: d.RateProfile ?? '' })), ForwardTo: url }, psk),
    conflicts: (domains, psk = options.psk) => post('/domains/conflicts', { Domains: domains.map((d) => ({ Domain: d, RateProfile: '' })), ForwardTo: url }, psk)
  }
}

export interface MulchParent {
  /** The chain API (proxy_chain_parent_url). */
  apiUrl: string
  /** The proxy listener clients use. */
  port: number
  /** Registrations received: ForwardTo → domains. */
  chained: Map<string, string>
  /** API calls received. */
  calls: Array<{ method?: string, path?: string, headers: Headers, body: string }>
}

/** Starts a mulch-proxy parent stand-in. */
export async function startMulchParent (t: Teardown, options: { psk: string }): Promise<MulchParent> {
  const chained = new Map<string, string>()
  const calls: MulchParent['calls'] = []
  const api = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString()
      calls.push({ method: req.method, path: req.url, headers: { ...req.headers }, body })
      if (req.url !== '/domains' && req.url !== '/domains/conflicts') { goError(res, '404 page not found', 404); return }
      if (req.headers['mulch-psk'] !== options.psk) { goError(res, 'Forbidden', 403); return }
      if (req.method !== 'POST') { goError(res, `Method ${req.method} not allowed for route ${req.url}`, 405); return }
      let data: { Domains: Array<{ Domain: string }> | null, ForwardTo: string }
      try { data = JSON.parse(body) } catch (err) { goError(res, (err as Error).message, 400); return }
      if (req.url === '/domains') {
        for (const [d, to] of [...chained]) if (to === data.ForwardTo) chained.delete(d)
        for (const d of data.Domains ?? []) chained.set(d.Domain, data.ForwardTo)
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end('"OK"')
        return
      }
      const conflicts = (data.Domains ?? []).filter((d) => chained.has(d.Domain) && new URL(chained.get(d.Domain)!).hostname !== new URL(data.ForwardTo).hostname)
        .map((d) => ({ Domain: d.Domain, Owner: new URL(chained.get(d.Domain)!).hostname }))
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify(conflicts.length === 0 ? null : conflicts))
    })
  })
  const apiPort = await listen(t, api)
  const proxy = http.createServer((req, res) => {
    const host = (req.headers.host ?? '').split(':')[0].toLowerCase()
    const target = chained.get(host)
    if (target === undefined) { goError(res, `domain ${host} not found`, 500); return }
    const headers: Headers = { ...req.headers, 'x-forwarded-proto': 'http', 'x-real-ip': peerIp(req), 'mulch-psk': options.psk }
    reverseProxy(req, res, target, headers)
  })
  const port = await listen(t, proxy)
  return { apiUrl: `http://127.0.0.1:${apiPort}`, port, chained, calls }
}
