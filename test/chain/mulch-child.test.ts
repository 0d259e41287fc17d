// A vmfront child under a mulch-proxy parent (SPEC §10, issue 11 breakages 4-5): with
// chain.parent_protocol "auto" it finds vmfront's API missing (404) and sends Mulch's
// POST /domains; it believes the parent's forwarded HTTP/1.1 requests only with the right
// Mulch-PSK from the parent's address, never passes Mulch-PSK to a VM, does not rate limit
// the parent's requests again, and applies redirect_to_https itself (a Mulch parent does not).
import t from 'tap'
import { Agent, request } from 'undici'
import { routesDoc } from '../helpers/proxy-process.ts'
import { connect } from 'node:net'
import { startBackend } from '../helpers/backend.ts'
import { PSK, chainStatus, startChild, until } from './chain-helpers.ts'
import { startMulchParent } from './mulch-standin.ts'

const STRICT = '\n[[rate_profile]]\nname = "default"\nlimit_burst_requests = 1\nlimit_requests_per_second = 0.01\n'

t.test('mulch-proxy parent ↔ vmfront child', async (t) => {
  const vm = await startBackend(t)
  const parent = await startMulchParent(t, { psk: PSK })
  const apiPort = Number(new URL(parent.apiUrl).port)
  const child = await startChild(t, {
    apiPort,
    name: 'c1',
    routes: routesDoc([
      { domain: 'app.example.com', target: vm.origin },
      { domain: 'sec.example.com', target: vm.origin, redirect_to_https: true }
    ]),
    toml: STRICT,
    // With workers (SPEC §12): the primary learns the Mulch protocol, each worker believes the parent.
    workers: 2
  })
  const fromClient = new Agent({ localAddress: '127.0.0.2' })
  t.teardown(() => fromClient.close())
  const via = async (port: number, host: string, headers: Record<string, string> = {}, dispatcher?: Agent) => {
    const res = await request(`http://127.0.0.1:${port}/p?q=1`, { headers: { host, ...headers }, ...(dispatcher === undefined ? {} : { dispatcher }) })
    return { status: res.statusCode, headers: res.headers, body: await res.body.text() }
  }

  await t.test('"auto": vmfront\'s API gets 404, then Mulch\'s POST /domains exactly as mulch-proxy sends it', async (t) => {
    await child.waitForLog((l) => l.msg === 'chain registered with parent' && l.protocol === 'mulch')
    const first = parent.calls[0]
    t.equal(first.path, '/chain/v1/register', 'vmfront\'s API tried first')
    const reg = parent.calls.find((c) => c.path === '/domains')!
    t.equal(reg.method, 'POST')
    t.equal(reg.headers['mulch-psk'], PSK)
    t.equal(reg.headers['content-type'], 'application/json')
    t.same(JSON.parse(reg.body), {
      Domains: [{ Domain: 'app.example.com', RateProfile: '' }, { Domain: 'sec.example.com', RateProfile: '' }],
      ForwardTo: `http://127.0.0.1:${child.port}`
    })
    t.equal(parent.chained.get('app.example.com'), `http://127.0.0.1:${child.port}`)
    const status = await chainStatus(child)
    t.equal(status.parent_protocol, 'mulch')
    t.equal(status.registered, true)
    t.same(status.parent_addresses, ['127.0.0.1'])
  })

  await t.test('the parent\'s requests: client IP believed, Mulch-PSK stripped, not rate limited again', async (t) => {
    for (let i = 0; i < 3; i++) {
      const res = await via(parent.port, 'app.example.com', { 'x-forwarded-for': '6.6.6.6', 'mulch-psk': 'forged-by-client', 'x-vmfront-chain': 'forged' }, fromClient)
      t.equal(res.status, 200, `request ${i + 1} through the parent is not limited by the child's strict profile`)
      const seen = JSON.parse(res.body) as { headers: Record<string, string> }
      t.equal(seen.headers['mulch-psk'], undefined, 'no Mulch-PSK reaches the VM')
      t.equal(seen.headers['x-vmfront-chain'], undefined, 'no vmfront chain header reaches the VM')
      t.equal(seen.headers['x-real-ip'], '127.0.0.2', 'X-Real-IP is the client')
      t.equal(seen.headers['x-forwarded-for'], '127.0.0.2, 127.0.0.1', 'the client first in X-Forwarded-For (the forged entry dropped), then the parent')
    }
    const access = await child.waitForLog((l) => l.msg === 'access' && l.domain === 'app.example.com')
    t.equal(access.client, '127.0.0.2')
  })

  await t.test('redirect_to_https through a Mulch parent: the child redirects to the parent\'s https', async (t) => {
    const res = await via(parent.port, 'sec.example.com', {}, fromClient)
    t.equal(res.status, 308)
    t.equal(res.headers.location, 'https://sec.example.com/p?q=1')
  })

  await t.test('a WebSocket from the parent: client believed, Mulch-PSK stripped', async (t) => {
    const upgrades: Array<Record<string, unknown>> = []
    const tunnels: import('node:stream').Duplex[] = []
    // The echo backend's socket is half-open (http.Server): close it when the proxy ends its side.
    vm.server.prependListener('upgrade', (req, socket) => { upgrades.push({ ...req.headers }); tunnels.push(socket); socket.on('end', () => { socket.destroy() }) })
    // As a Mulch parent replays an upgrade: from its address, with its Mulch-PSK and the client appended.
    const data = await new Promise<string>((resolve, reject) => {
      const socket = connect(child.port, '127.0.0.1')
      let head = ''
      socket.setEncoding('latin1')
      socket.on('error', reject)
      socket.on('data', (c: string) => {
        head += c
        if (!head.includes('\r\n\r\n')) return
        socket.destroy()
        resolve(head)
      })
      socket.write(`GET /ws HTTP/1.1\r\nHost: app.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nMulch-PSK: ${PSK}\r\nX-Forwarded-For: 6.6.6.6, 203.0.113.7\r\nX-Real-Ip: 203.0.113.7\r\n\r\n`)
    })
    t.match(data, /^HTTP\/1\.1 101/)
    t.match(data, /X-Seen-Real-IP: 203\.0\.113\.7/i)
    t.equal(upgrades.at(-1)?.['mulch-psk'], undefined, 'no Mulch-PSK reaches the VM')
    t.equal(upgrades.at(-1)?.['x-forwarded-for'], '203.0.113.7, 127.0.0.1')
    // The tunnel ends with the client: the proxy ends the VM side too.
    t.equal(await until('VM side of the tunnel closed', () => (tunnels.every((s) => s.destroyed) ? true : undefined), 5000), true)
  })

  await t.test('the right Mulch-PSK from another address is an ordinary client', async (t) => {
    const res = await via(child.port, 'app.example.com', { 'mulch-psk': PSK, 'x-forwarded-for': '9.9.9.9', 'x-real-ip': '9.9.9.9' }, fromClient)
    t.equal(res.status, 200)
    const seen = JSON.parse(res.body) as { headers: Record<string, string> }
    t.equal(seen.headers['x-real-ip'], '127.0.0.2', 'its X-Forwarded-For is not believed')
    t.equal(seen.headers['x-forwarded-for'], '127.0.0.2')
    t.equal(seen.headers['mulch-psk'], undefined, 'and its Mulch-PSK does not reach the VM')
    t.equal((await via(child.port, 'app.example.com', { 'mulch-psk': PSK }, fromClient)).status, 429, 'and it is rate limited')
    await child.waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith('Mulch-PSK refused: not from the parent'))
  })

  await t.test('a wrong Mulch-PSK from the parent\'s address is an ordinary client', async (t) => {
    const res = await via(child.port, 'app.example.com', { 'mulch-psk': 'wrong-psk-wrong-psk', 'x-forwarded-for': '9.9.9.9' })
    t.equal(res.status, 200)
    const seen = JSON.parse(res.body) as { headers: Record<string, string> }
    t.equal(seen.headers['x-real-ip'], '127.0.0.1')
    t.equal(seen.headers['mulch-psk'], undefined)
    t.equal((await via(child.port, 'app.example.com', { 'mulch-psk': 'wrong-psk-wrong-psk' })).status, 429, 'rate limited like anyone')
    await child.waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith('Mulch-PSK refused: wrong value'))
  })

  await t.test('SIGHUP sends POST /domains again with the new routes', async (t) => {
    const before = parent.calls.filter((c) => c.path === '/domains').length
    child.writeRoutes(routesDoc([{ domain: 'new.example.com', target: vm.origin }]))
    await child.reload()
    await until('re-registration', () => (parent.calls.filter((c) => c.path === '/domains').length > before ? true : undefined))
    t.same([...parent.chained.keys()], ['new.example.com'], 'the Mulch parent replaced the list')
    t.equal((await via(parent.port, 'new.example.com', {}, fromClient)).status, 200)
  })
})

t.test('parent_protocol = "mulch" skips vmfront\'s API; a wrong PSK is reported', async (t) => {
  const parent = await startMulchParent(t, { psk: PSK })
  const child = await startChild(t, {
    apiPort: Number(new URL(parent.apiUrl).port),
    name: 'c2',
    psk: 'another-psk-0123456789',
    routes: routesDoc([{ domain: 'x.example.com', target: 'http://127.0.0.1:1' }]),
    chain: { parent_protocol: 'mulch' }
  })
  const failed = await child.waitForLog((l) => l.msg === 'chain registration failed: retrying')
  t.match(String((failed.err as { message?: string })?.message ?? JSON.stringify(failed.err)), /answered 403 to POST \/domains \(wrong chain\.psk/)
  t.notOk(parent.calls.some((c) => c.path === '/chain/v1/register'), 'no vmfront API call')
  t.equal(parent.chained.size, 0)
})
