// Every redirect (redirect_to, redirect_to_https, absolute-form targets, ACME paths)
// against every listener layout: both listeners on port 0 (the https port is only known
// once bound), http only, https only, and requests from a trusted proxy that terminated
// TLS (or not) in front. Raw HTTP/1.1 over node:net and node:tls against real processes.
import t, { type Test } from 'tap'
import net from 'node:net'
import tls from 'node:tls'
import { startProxyProcess, routesDoc, type ProxyProcess } from '../helpers/proxy-process.ts'
import { startBackend, type Backend } from '../helpers/backend.ts'

interface Answer { status: number, location: string | undefined, body: string }

/**
 * One request with Connection: close. `trusted` sends it from 127.0.0.1 (the trusted
 * proxy), else from 127.0.0.2 (an ordinary client); `tls` over the https listener.
 */
function ask (port: number, options: { host: string, target?: string, trusted?: boolean, tls?: boolean, headers?: string }): Promise<Answer> {
  const text = `GET ${options.target ?? '/p?q=1'} HTTP/1.1\r\nHost: ${options.host}\r\n${options.headers ?? ''}Connection: close\r\n\r\n`
  const localAddress = options.trusted === true ? '127.0.0.1' : '127.0.0.2'
  return new Promise((resolve, reject) => {
    const tcp = net.connect({ port, host: '127.0.0.1', localAddress })
    const socket = options.tls === true
      ? tls.connect({ socket: tcp, servername: options.host, ALPNProtocols: ['http/1.1'], rejectUnauthorized: false })
      : tcp
    let data = ''
    socket.setEncoding('latin1')
    socket.on('data', (c: string) => { data += c })
    socket.on('error', reject)
    socket.on('close', () => {
      const head = data.slice(0, data.indexOf('\r\n\r\n'))
      const location = /\r\nlocation: ([^\r]*)/i.exec(head)?.[1]
      resolve({ status: Number(data.slice(9, 12)), location, body: data.slice(head.length + 4) })
    })
    socket.write(text)
  })
}

async function layout (t: Test, listen: { http: boolean, https: boolean }): Promise<{ proxy: ProxyProcess, vm: Backend }> {
  const vm = await startBackend(t)
  const proxy = await startProxyProcess(t, {
    routes: routesDoc([
      { domain: 'secure.test', target: vm.origin, redirect_to_https: true },
      { domain: 'old.test', redirect_to: 'new.test', redirect_code: 301 }
    ]),
    listen: `[listen]\nhttp = "${listen.http ? '127.0.0.1:0' : ''}"\nhttps = "${listen.https ? '127.0.0.1:0' : ''}"\nadmin = "127.0.0.1:0"`,
    toml: '[headers]\ntrusted_proxies = ["127.0.0.1"]'
  })
  return { proxy, vm }
}

t.test('both listeners: the https port in Location is the one really bound', async (t) => {
  const { proxy, vm } = await layout(t, { http: true, https: true })
  const { http, https } = proxy.ports
  const cases: Array<[string, Parameters<typeof ask>[1] & { port: number }, number, string | undefined]> = [
    ['plain HTTP → https with the port', { port: http, host: 'secure.test' }, 308, `https://secure.test:${https}/p?q=1`],
    ['absolute-form target → https on its authority', { port: http, host: 'other.test', target: 'http://SECURE.test/abs' }, 308, `https://secure.test:${https}/abs`],
    ['redirect_to over HTTP: same scheme, no port', { port: http, host: `old.test:${http}` }, 301, 'http://new.test/p?q=1'],
    ['redirect_to over HTTPS', { port: https, host: 'old.test', tls: true }, 301, 'https://new.test/p?q=1'],
    ['HTTPS is served', { port: https, host: 'secure.test', tls: true }, 200, undefined],
    ['on https from a trusted proxy that got plain HTTP → https with the port', { port: https, host: 'secure.test', tls: true, trusted: true, headers: 'X-Forwarded-Proto: http\r\n' }, 308, `https://secure.test:${https}/p?q=1`],
    ['on http from a trusted proxy that terminated TLS: served', { port: http, host: 'secure.test', trusted: true, headers: 'X-Forwarded-Proto: https\r\n' }, 200, undefined]
  ]
  for (const [name, options, status, location] of cases) {
    const res = await ask(options.port, options)
    t.equal(res.status, status, `${name}: ${status}`)
    t.equal(res.location, location, `${name}: Location`)
  }

  await t.test('ACME paths are never redirected to https: a token vmfront did not issue is the VM\'s, over plain HTTP', async (t) => {
    const res = await ask(proxy.ports.http, { host: 'secure.test', target: '/.well-known/acme-challenge/vm-own-token' })
    t.equal(res.status, 200, 'forwarded, not 308')
    t.equal((JSON.parse(res.body) as { url: string }).url, '/.well-known/acme-challenge/vm-own-token')
    t.equal(vm.requests.at(-1)?.headers['x-forwarded-proto'], 'http', 'over plain HTTP')
    const other = await ask(proxy.ports.http, { host: 'secure.test', target: '/.well-known/other' })
    t.equal(other.status, 308, 'only the challenge prefix is exempt')
  })
})

t.test('http only: nothing here serves https, so only a trusted front\'s plain-HTTP client is redirected', async (t) => {
  const { proxy } = await layout(t, { http: true, https: false })
  const port = proxy.ports.http
  const direct = await ask(port, { host: 'secure.test' })
  t.equal(direct.status, 200, 'a direct client is served (a redirect would lead nowhere)')
  const behindFront = await ask(port, { host: 'secure.test', trusted: true, headers: 'X-Forwarded-Proto: http\r\n' })
  t.equal(behindFront.status, 308, 'a client of the TLS-terminating front is sent to https')
  t.equal(behindFront.location, 'https://secure.test/p?q=1', 'on the front\'s default port')
  const moved = await ask(port, { host: 'old.test' })
  t.equal(moved.location, 'http://new.test/p?q=1', 'redirect_to unchanged')
})

t.test('https only: a trusted proxy\'s plain-HTTP client is redirected to the bound port', async (t) => {
  const { proxy } = await layout(t, { http: false, https: true })
  const port = proxy.ports.https
  const res = await ask(port, { host: 'secure.test', tls: true, trusted: true, headers: 'X-Forwarded-Proto: http\r\n' })
  t.equal(res.status, 308)
  t.equal(res.location, `https://secure.test:${port}/p?q=1`)
  const moved = await ask(port, { host: 'old.test', tls: true })
  t.equal(moved.location, 'https://new.test/p?q=1')
})
