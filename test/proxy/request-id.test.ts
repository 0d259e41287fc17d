// SPEC §13: X-Request-Id is kept from a trusted proxy (well-formed only), replaced
// from anyone else, forwarded to the VM (requests and WebSocket upgrades) and
// written in the access log. Real proxy processes, a real VM, raw HTTP/1.1 bytes.
import t from 'tap'
import { startBackend, rawRequest } from '../helpers/backend.ts'
import { startProxyProcess, routesDoc } from '../helpers/proxy-process.ts'
import { openUpgrade, upgradeRequest } from '../helpers/websocket-client.ts'

const GENERATED = /^[0-9a-f]{16}-[0-9a-z]+$/

/** The request ids the VM saw on WebSocket upgrades, by path (the echo backend's upgrade listener does not record them). */
function recordUpgrades (vm: Awaited<ReturnType<typeof startBackend>>): Map<string, unknown> {
  const seen = new Map<string, unknown>()
  vm.server.prependListener('upgrade', (req: { url?: string, headers: Record<string, unknown> }) => { seen.set(req.url ?? '', req.headers['x-request-id']) })
  return seen
}

async function exchange (port: number, path: string, extra: string, vm: Awaited<ReturnType<typeof startBackend>>, proxy: Awaited<ReturnType<typeof startProxyProcess>>): Promise<{ sent: unknown, logged: unknown }> {
  const res = await rawRequest(port, `GET ${path} HTTP/1.1\r\nHost: app.test\r\n${extra}Connection: close\r\n\r\n`)
  if (!res.data.startsWith('HTTP/1.1 200 ')) throw new Error(`unexpected answer: ${res.data.slice(0, 80)}`)
  const line = await proxy.waitForLog((l) => l.msg === 'access' && l.path === path)
  const seen = vm.requests.find((r) => r.url === path)
  return { sent: seen?.headers['x-request-id'], logged: line.request_id }
}

t.test('from an untrusted client the id is replaced; requests get distinct ids', async (t) => {
  const vm = await startBackend(t)
  const upgrades = recordUpgrades(vm)
  const proxy = await startProxyProcess(t, { routes: routesDoc([{ domain: 'app.test', target: vm.origin }]) })
  const port = proxy.ports.http

  const forged = await exchange(port, '/forged', 'X-Request-Id: victim-request-42\r\n', vm, proxy)
  t.match(forged.sent, GENERATED, 'the client\'s id is not forwarded')
  t.not(forged.sent, 'victim-request-42')
  t.equal(forged.logged, forged.sent, 'the log has the id the VM got')

  const plain = await exchange(port, '/plain', '', vm, proxy)
  t.match(plain.sent, GENERATED)
  t.not(plain.sent, forged.sent, 'distinct ids')

  const twice = await exchange(port, '/twice', 'X-Request-Id: a\r\nX-Request-Id: b\r\n', vm, proxy)
  t.match(twice.sent, GENERATED, 'two incoming ids: one generated id goes on')

  // WebSocket upgrades get an id too, and the client's is replaced.
  const opened = await openUpgrade(port, upgradeRequest('app.test', '/ws-id', 'X-Request-Id: victim-ws\r\n'))
  t.teardown(() => { opened.socket.destroy() })
  t.match(opened.head, /^HTTP\/1\.1 101 /)
  const wsSeen = upgrades.get('/ws-id')
  t.match(wsSeen, GENERATED, 'the upgrade carries a generated id to the VM')
  await opened.close()
  const wsLine = await proxy.waitForLog((l) => l.msg === 'access' && l.path === '/ws-id')
  t.equal(wsLine.request_id, wsSeen)
})

t.test('from a trusted proxy a well-formed id is kept; a bad one is replaced', async (t) => {
  const vm = await startBackend(t)
  const upgrades = recordUpgrades(vm)
  const proxy = await startProxyProcess(t, {
    routes: routesDoc([{ domain: 'app.test', target: vm.origin }]),
    toml: '[headers]\ntrusted_proxies = ["127.0.0.1"]'
  })
  const port = proxy.ports.http

  const uuid = '3f1c2a9e-7b4d-4e1a-9c3b-2d5e6f708192'
  const kept = await exchange(port, '/kept', `X-Request-Id: ${uuid}\r\n`, vm, proxy)
  t.equal(kept.sent, uuid, 'kept and forwarded')
  t.equal(kept.logged, uuid, 'and logged')

  const cases: Array<[string, string]> = [
    ['/long', 'x'.repeat(201)],
    ['/space', 'two words'],
    ['/quote', 'id"x'],
    ['/ctl', 'a\tb'], // other control characters never pass Node's parser (400)
    ['/utf8', 'caf\u00e9']
  ]
  for (const [path, value] of cases) {
    const r = await exchange(port, path, `X-Request-Id: ${value}\r\n`, vm, proxy)
    t.match(r.sent, GENERATED, `${path}: replaced`)
    t.equal(r.logged, r.sent, `${path}: the log has the new id`)
  }
  const longest = 'A'.repeat(200)
  t.equal((await exchange(port, '/longest', `X-Request-Id: ${longest}\r\n`, vm, proxy)).sent, longest, '200 characters are kept')

  const opened = await openUpgrade(port, upgradeRequest('app.test', '/ws-kept', `X-Request-Id: ${uuid}\r\n`))
  t.teardown(() => { opened.socket.destroy() })
  t.match(opened.head, /^HTTP\/1\.1 101 /)
  t.equal(upgrades.get('/ws-kept'), uuid, 'the upgrade keeps the trusted id')
  await opened.close()
})
