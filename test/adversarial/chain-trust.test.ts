// Chain trust (SPEC §14): a child believes forwarded headers only on a connection
// the parent authenticated. A copied chain header, a replayed parent→child
// exchange, or the child's control paths reached through the parent get nothing:
// such a client is an ordinary client (its headers replaced, rate limited), and
// no chain credential ever reaches a VM.
import t from 'tap'
import http2 from 'node:http2'
import { Agent, request } from 'undici'
import { metricValue, routesDoc } from '../helpers/proxy-process.ts'
import { deadPort, startBackend } from '../helpers/backend.ts'
import { PSK, startChild, startParent, until } from '../chain/chain-helpers.ts'
import { oldForwardToken, replayBytes, spoofChainHeader, startRecordingRelay, trackUpgrades, webSocketHandshake } from './chain-attacks.ts'

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1')
// Two requests, then 429 at once: a client the child limits shows it at the third request.
const TIGHT = '[[rate_profile]]\nname = "tight"\nlimit_burst_requests = 2\nlimit_requests_per_second = 1\n'

t.test('chain trust between a real parent and child', async (t) => {
  const vm = await startBackend(t)
  const upgrades = trackUpgrades(t, vm.server)
  const parent = await startParent(t)
  const childPort = await deadPort()
  // The parent reaches the child through a relay that records what the parent sends.
  const relay = await startRecordingRelay(t, childPort)
  const child = await startChild(t, {
    apiPort: parent.apiPort,
    name: 'trusty',
    port: childPort,
    childUrl: `http://127.0.0.1:${relay.port}`,
    routes: routesDoc([{ domain: 'app.example.com', target: vm.origin, rate_profile: 'tight' }]),
    toml: TIGHT
  })
  await parent.waitForLog((l) => l.msg === 'chain child registered' && l.child === 'trusty')
  const fromClient = new Agent({ localAddress: '127.0.0.2' })
  t.teardown(() => fromClient.close())
  const viaParent = async (path: string) => {
    const res = await request(`http://127.0.0.1:${parent.ports.http}${path}`, { dispatcher: fromClient, headers: { host: 'app.example.com', 'x-vmfront-chain': oldForwardToken(PSK) } })
    const body = await res.body.text()
    return { status: res.statusCode, headers: res.headers, seen: res.statusCode === 200 ? (JSON.parse(body) as { headers: Record<string, string> }).headers : undefined }
  }
  const failures = async () => metricValue(await child.metrics(), 'vmfront_chain_auth_failures_total') ?? 0

  await t.test('the real parent → child path keeps the client and skips the child\'s rate limit', async (t) => {
    for (let i = 0; i < 5; i++) {
      const res = await viaParent('/captured')
      t.equal(res.status, 200, `request ${i} through the parent is not limited by the child`)
      t.equal(res.seen?.['x-forwarded-for'], '127.0.0.2, 127.0.0.1', 'X-Forwarded-For: <client>, <parent>')
      t.equal(res.seen?.['x-real-ip'], '127.0.0.2', 'X-Real-IP: <client>')
      t.equal(res.seen?.['x-vmfront-chain'], undefined, 'no chain header reaches the VM (not even the client\'s)')
    }
    const head = await webSocketHandshake(parent.ports.http, 'app.example.com', { localAddress: '127.0.0.2', headers: { 'x-vmfront-chain': 'f'.repeat(64) } })
    t.match(head, /^HTTP\/1\.1 101/)
    t.match(head, /X-Seen-Real-IP: 127\.0\.0\.2\r?$/im, 'a WebSocket through the chain keeps the client too (one-time ticket)')
    t.equal(upgrades.length, 1)
    t.equal(upgrades[0]['x-vmfront-chain'], undefined, 'the ticket does not reach the VM')
    t.equal(upgrades[0]['x-forwarded-for'], '127.0.0.2, 127.0.0.1')
    t.equal(await failures(), 0, 'nothing refused on the real path')
  })

  await t.test('a client with the old static header, over HTTP/1.1 or h2c, is an ordinary client', async (t) => {
    const before = await failures()
    for (const [http2, address] of [[false, '127.0.0.4'], [true, '127.0.0.5']] as const) {
      const result = await spoofChainHeader(child.port, 'app.example.com', oldForwardToken(PSK), 5, { http2, localAddress: address })
      const how = http2 ? 'h2c' : 'HTTP/1.1'
      t.ok((result.statuses[429] ?? 0) >= 1, `${how}: rate limited like anyone (${JSON.stringify(result.statuses)})`)
      t.ok(result.seen.length >= 1)
      for (const seen of result.seen) {
        t.equal(seen.realIp, address, `${how}: X-Real-IP is the peer, not the spoofed 6.6.6.6`)
        t.equal(seen.forwardedFor, address, `${how}: X-Forwarded-For replaced`)
        t.equal(seen.chainHeader, undefined, `${how}: the header is dropped before the VM`)
      }
    }
    t.ok(await failures() >= before + 10, 'every copied header is counted')
    const ws = await webSocketHandshake(child.port, 'app.example.com', { localAddress: '127.0.0.6', headers: { 'x-vmfront-chain': oldForwardToken(PSK), 'x-forwarded-for': '6.6.6.6' } })
    t.match(ws, /X-Seen-Real-IP: 127\.0\.0\.6\r?$/im, 'an upgrade with the old header is not trusted')
    t.equal(upgrades.at(-1)?.['x-vmfront-chain'], undefined, 'and the header does not reach the VM')
  })

  await t.test('a raw h2c client cannot pass the session proof with a copied value', async (t) => {
    const before = await failures()
    const session = http2.connect(`http://127.0.0.1:${child.port}`)
    session.on('error', () => { /* the child closes it after the refused proof */ })
    const call = (headers: http2.OutgoingHttpHeaders) => new Promise<{ status: number, headers: http2.IncomingHttpHeaders }>((resolve, reject) => {
      const stream = session.request({ ':authority': 'app.example.com', ...headers }, { endStream: true })
      stream.on('response', (h) => { stream.resume(); stream.on('end', () => { resolve({ status: Number(h[':status']), headers: h }) }) })
      stream.on('error', reject)
    })
    const challenge = await call({ ':method': 'GET', ':path': '/.well-known/vmfront-chain/v1/challenge' })
    t.equal(challenge.status, 200)
    t.match(challenge.headers['x-vmfront-chain'], /^[0-9a-f]{64}$/, 'a nonce for this session')
    const proof = await call({ ':method': 'POST', ':path': '/.well-known/vmfront-chain/v1/session', 'x-vmfront-chain': oldForwardToken(PSK) })
    t.equal(proof.status, 401)
    await until('the session closed by the child', () => session.closed || session.destroyed || undefined, 3000)
    session.destroy()
    t.equal(await failures(), before + 1, 'the refused proof is counted')
    t.ok(child.logs.some((l) => l.msg === 'chain session proof refused: wrong PSK, or not a vmfront parent'), 'and logged')
  })

  await t.test('the child\'s control paths are not reachable through the parent', async (t) => {
    const res = await viaParent('/.well-known/vmfront-chain/v1/challenge')
    t.equal(res.status, 404)
    t.equal(res.headers['x-vmfront-chain'], undefined, 'no nonce leaks to a client')
    const direct = await request(`http://127.0.0.1:${child.port}/.well-known/vmfront-chain/v1/challenge`, { headers: { host: 'app.example.com' } })
    t.equal(direct.statusCode, 404, 'nor over HTTP/1.1 on the child')
    await direct.body.text()
    t.equal(vm.requests.filter((r) => r.url?.startsWith('/.well-known/vmfront-chain/')).length, 0, 'never routed to the VM')
    const after = await viaParent('/captured')
    t.equal(after.seen?.['x-real-ip'], '127.0.0.2', 'the parent\'s session is still trusted')
  })

  await t.test('replaying a captured parent → child exchange on a new connection is not trusted', async (t) => {
    const captured = relay.captured()
    const h2 = captured.find((b) => b.subarray(0, PREFACE.length).equals(PREFACE))
    const ws = captured.find((b) => b.toString('latin1').startsWith('GET /ws '))
    t.ok(h2 !== undefined, 'the parent\'s HTTP/2 session was captured (HPACK-compressed: replayed as is)')
    t.ok(ws !== undefined && /x-vmfront-chain: [0-9a-f]{64}\r\n/.test(ws.toString('latin1')), 'the parent\'s WebSocket upgrade, with its ticket, was captured')
    const before = await failures()
    const trustedBefore = vm.requests.filter((r) => r.url === '/captured' && r.headers['x-real-ip'] === '127.0.0.2').length
    const replayed = await replayBytes(child.port, h2!, '127.0.0.3', 3000)
    t.ok(replayed.closedByPeer, 'the child closes a session whose proof fails')
    t.equal(vm.requests.filter((r) => r.url === '/captured' && r.headers['x-real-ip'] === '127.0.0.2').length, trustedBefore, 'no replayed request was trusted')
    for (const r of vm.requests.filter((r) => r.url === '/captured' && r.headers['x-real-ip'] !== '127.0.0.2')) {
      t.equal(r.headers['x-real-ip'], '127.0.0.3', 'a replayed request that got through is the replayer\'s own')
      t.equal(r.headers['x-forwarded-for'], '127.0.0.3')
    }
    t.ok(await failures() > before, 'the replayed proof is refused and counted')

    // From an address of its own: upgrades are rate limited like requests (SPEC §14),
    // and 127.0.0.3 has spent its burst (127.0.0.4 and .5 theirs) on the replayed requests above.
    const upgradesBefore = upgrades.length
    const wsReplay = replayBytes(child.port, ws!, '127.0.0.9', 3000)
    await until('the replayed upgrade at the VM', () => upgrades.length > upgradesBefore || undefined, 3000)
    t.equal(upgrades.at(-1)?.['x-real-ip'], '127.0.0.9', 'a replayed ticket is spent: the upgrade is the replayer\'s')
    t.equal(upgrades.at(-1)?.['x-vmfront-chain'], undefined)
    await wsReplay
  })
})
