// SPEC §14 (§5): the certificate manager answers only the HTTP-01 tokens of its own orders in
// progress; any other `/.well-known/acme-challenge/` request is left untouched (false) so the
// proxy forwards it to the VM over plain HTTP (a VM may run its own ACME client). Checked on a
// real HTTP server while a real Pebble order is waiting for validation.
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { createCertManager } from '../../certs/index.ts'
import { startPebble } from '../helpers/pebble.ts'
import { FAST, tmpDir } from './harness.ts'

const PREFIX = '/.well-known/acme-challenge/'

interface Probe { method: string, path: string, answered: boolean, status: number, body: string }

t.test('unknown tokens are not answered, even while an order is in progress', async (t) => {
  let manager: ReturnType<typeof createCertManager> | undefined
  let pebbleToken: string | undefined
  let probes: Promise<Probe[]> | undefined
  const server = http.createServer((req, res) => {
    const isProbe = req.headers['x-probe'] === '1'
    if (!isProbe && req.url?.startsWith(PREFIX) === true && probes === undefined) {
      // Pebble's validation request: the order is in progress right now. Probe before answering.
      pebbleToken = req.url.slice(PREFIX.length)
      probes = runProbes(pebbleToken)
      void probes.then(() => { answer(req, res) }, () => { answer(req, res) })
      return
    }
    answer(req, res)
  })
  const answer = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    if (manager?.handleHttpChallenge(req, res) === true) return
    res.writeHead(404, { 'x-passed-on': '1' })
    res.end('from the VM')
  }
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  t.teardown(() => { server.closeAllConnections(); server.close() })
  const port = (server.address() as AddressInfo).port

  async function probe (method: string, path: string): Promise<Probe> {
    return await new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path, method, headers: { host: 'app.test', 'x-probe': '1' }, agent: false }, (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (c: string) => { body += c })
        res.on('end', () => { resolve({ method, path, answered: res.headers['x-passed-on'] !== '1', status: res.statusCode ?? 0, body }) })
      })
      req.on('error', reject)
      req.end()
    })
  }
  async function runProbes (token: string): Promise<Probe[]> {
    return await Promise.all([
      probe('GET', `${PREFIX}${token}`), // control: the order's own token is answered
      probe('GET', `${PREFIX}unknownTokenOfTheVm_0123456789`),
      probe('HEAD', `${PREFIX}unknownTokenOfTheVm_0123456789`),
      probe('GET', `${PREFIX}${token.toUpperCase() === token ? token.toLowerCase() : token.toUpperCase()}`),
      probe('GET', `${PREFIX}${token}/more`),
      probe('GET', `${PREFIX}${token}x`),
      probe('POST', `${PREFIX}${token}`),
      probe('GET', PREFIX)
    ])
  }

  const pebble = await startPebble({ httpPort: port })
  t.teardown(() => pebble.stop())
  manager = createCertManager({
    ...FAST, storageDir: tmpDir(t), policy: () => true,
    acme: { enabled: true, directoryUrl: pebble.directoryUrl, email: '', caFile: pebble.caFile }
  })
  t.teardown(() => manager?.stop())
  await manager.start()
  await manager.ensure('app.test')
  const results = await probes
  if (results === undefined || pebbleToken === undefined) throw new Error('Pebble never validated')
  const [own, ...others] = results
  t.equal(own.answered, true, 'the token of the order in progress is answered')
  t.equal(own.status, 200)
  t.match(own.body, new RegExp(`^${pebbleToken}\\.`), 'with its key authorization')
  for (const p of others) {
    t.same({ answered: p.answered, status: p.status, body: p.method === 'HEAD' ? '' : p.body }, { answered: false, status: 404, body: p.method === 'HEAD' ? '' : 'from the VM' }, `${p.method} ${p.path}: left to the VM`)
  }
  const after = await probe('GET', `${PREFIX}${pebbleToken}`)
  t.equal(after.answered, false, 'once the order is done, its token is left to the VM too')
})
