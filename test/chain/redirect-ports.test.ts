// redirect_to_https through a chain: the parent applies it with its own https port
// (the one clients reach), never the child's; a parent without an https listener
// serves the request rather than redirecting to the child's port. redirect_to
// routes stay the child's, with the client's scheme and no port.
import t from 'tap'
import { Agent, request } from 'undici'
import { routesDoc } from '../helpers/proxy-process.ts'
import { startBackend } from '../helpers/backend.ts'
import { startChild, startParent, until } from './chain-helpers.ts'
import { trackUpgrades, webSocketHandshake } from '../adversarial/chain-attacks.ts'

const ROUTES = (origin: string) => routesDoc([
  { domain: 'app.example.com', target: origin, redirect_to_https: true },
  { domain: 'plain.example.com', target: origin },
  { domain: 'old.example.com', redirect_to: 'app.example.com', redirect_code: 301 }
])

async function call (port: number, host: string, path: string, tls = false) {
  const dispatcher = new Agent(tls ? { connect: { rejectUnauthorized: false, servername: host } } : {})
  try {
    const res = await request(`${tls ? 'https' : 'http'}://127.0.0.1:${port}${path}`, { dispatcher, headers: { host } })
    await res.body.text()
    return { status: res.statusCode, location: res.headers.location as string | undefined }
  } finally {
    await dispatcher.close()
  }
}

t.test('parent with http and https listeners, child with its own https listener', async (t) => {
  const vm = await startBackend(t)
  trackUpgrades(t, vm.server)
  const parent = await startParent(t, { listen: '[listen]\nhttp = "127.0.0.1:0"\nhttps = "127.0.0.1:0"\nadmin = "127.0.0.1:0"' })
  const child = await startChild(t, { apiPort: parent.apiPort, name: 'redir', https: true, routes: ROUTES(vm.origin) })
  t.not(parent.ports.https, child.ports.https, 'two different https ports')
  await until('the chained domains at the parent', async () => ((await call(parent.ports.http, 'plain.example.com', '/')).status === 200 || undefined))

  const viaHttp = await call(parent.ports.http, 'app.example.com', '/p?q=1')
  t.equal(viaHttp.status, 308)
  t.equal(viaHttp.location, `https://app.example.com:${parent.ports.https}/p?q=1`, 'the parent\'s https port, not the child\'s')
  const viaHttps = await call(parent.ports.https, 'app.example.com', '/p?q=1', true)
  t.equal(viaHttps.status, 200, 'https through the chain is served')
  t.equal((await call(parent.ports.http, 'plain.example.com', '/x')).status, 200, 'a route without redirect_to_https is served over http')
  const moved = await call(parent.ports.http, 'old.example.com', '/x?y')
  t.equal(moved.status, 301)
  t.equal(moved.location, 'http://app.example.com/x?y', 'redirect_to: the client\'s scheme, no port')
  t.equal((await call(parent.ports.https, 'old.example.com', '/x', true)).location, 'https://app.example.com/x')
  const ws = await webSocketHandshake(parent.ports.http, 'plain.example.com')
  t.match(ws, /^HTTP\/1\.1 101/, 'upgrades through the chain still work')

  const direct = await call(child.port, 'app.example.com', '/d')
  t.equal(direct.status, 308)
  t.equal(direct.location, `https://app.example.com:${child.ports.https}/d`, 'the child\'s own clients get the child\'s https port')
})

t.test('parent without an https listener: the child does not redirect to its own port', async (t) => {
  const vm = await startBackend(t)
  const parent = await startParent(t)
  const child = await startChild(t, { apiPort: parent.apiPort, name: 'redir2', https: true, routes: ROUTES(vm.origin) })
  await until('the chained domains at the parent', async () => ((await call(parent.ports.http, 'plain.example.com', '/')).status === 200 || undefined))
  const res = await call(parent.ports.http, 'app.example.com', '/p')
  t.equal(res.status, 200, `served (a redirect could only name the child's port ${child.ports.https}, which clients do not reach)`)
  t.equal(res.location, undefined)
})
