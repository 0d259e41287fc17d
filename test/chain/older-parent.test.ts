// A child whose parent predates redirect_to_https in registrations (it refuses
// the key with 400) still registers, without it, and says the parent is older.
import t from 'tap'
import http from 'node:http'
import type net from 'node:net'
import { routesDoc } from '../helpers/proxy-process.ts'
import { startBackend } from '../helpers/backend.ts'
import { startChild } from './chain-helpers.ts'

t.test('registering with an older parent', async (t) => {
  const bodies: any[] = []
  // The older parent's schema: unknown keys are refused, naming the field.
  const older = http.createServer((req, res) => {
    let text = ''
    req.on('data', (c: Buffer) => { text += c.toString() })
    req.on('end', () => {
      const body = JSON.parse(text)
      bodies.push(body)
      const i = (body.domains as any[]).findIndex((d) => 'redirect_to_https' in d)
      res.setHeader('content-type', 'application/json')
      if (i !== -1) {
        res.statusCode = 400
        res.end(JSON.stringify({ error: { code: 'CHAIN_BAD_REQUEST', message: `domains[${i}].redirect_to_https: is not a known key (known: domain, rate_profile)` } }))
        return
      }
      res.end(JSON.stringify({ lease_ttl_seconds: 60, domains: body.domains }))
    })
  })
  await new Promise<void>((resolve) => older.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => { older.closeAllConnections(); older.close(() => { resolve() }) }))
  const vm = await startBackend(t)
  const child = await startChild(t, {
    apiPort: (older.address() as net.AddressInfo).port,
    name: 'newer',
    routes: routesDoc([{ domain: 'a.example.com', target: vm.origin, redirect_to_https: true, rate_profile: 'p' }, { domain: 'b.example.com', target: vm.origin }])
  })
  const registered = await child.waitForLog((l) => l.msg === 'chain registered with parent', 5000)
  t.equal(registered.domains, 2)
  t.ok(child.logs.some((l) => l.msg === 'chain parent is older and does not take redirect_to_https: registering without it (upgrade the parent)'))
  t.same(bodies[0].domains, [{ domain: 'a.example.com', rate_profile: 'p', redirect_to_https: true }, { domain: 'b.example.com' }], 'first with the key')
  t.same(bodies.at(-1).domains, [{ domain: 'a.example.com', rate_profile: 'p' }, { domain: 'b.example.com' }], 'then without it')
})
