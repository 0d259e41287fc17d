// An https:// parent_url: the chain API speaks TLS with the certificate manager's
// certificates (here the self-signed fallback, as ACME is off and the host is an IP).
import t from 'tap'
import { Agent, request } from 'undici'
import { startProxyProcess } from '../helpers/proxy-process.ts'
import { deadPort } from '../helpers/backend.ts'
import { PSK, timings } from './chain-helpers.ts'

t.test('the chain API over https', async (t) => {
  const apiPort = await deadPort()
  const parent = await startProxyProcess(t, { toml: `[chain]\nmode = "parent"\nparent_url = "https://127.0.0.1:${apiPort}"\npsk = "${PSK}"\n${timings()}` })
  await parent.waitForLog((l) => l.msg === 'chain API listening')
  const insecure = new Agent({ connect: { rejectUnauthorized: false } })
  t.teardown(() => insecure.close())
  const call = async (psk: string) => {
    const res = await request(`https://127.0.0.1:${apiPort}/chain/v1/check`, {
      dispatcher: insecure, method: 'POST',
      headers: { authorization: `Bearer ${psk}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'c1', domains: ['a.example.com'] })
    })
    return { status: res.statusCode, body: await res.body.json() }
  }
  t.same(await call(PSK), { status: 200, body: { conflicts: [] } })
  t.equal((await call('wrong-wrong-wrong-wrong')).status, 401)
  const plain = await request(`http://127.0.0.1:${apiPort}/chain/v1/status`).then((r) => r.body.text().then(() => r.statusCode), (err: Error) => err)
  t.not(plain, 200, 'no plain HTTP on an https:// parent_url')
  // The same TLS policy as the https listener: no CBC suite in TLS 1.2 (LUCKY13).
  const tls = await import('node:tls')
  const handshake = (ciphers: string) => new Promise<string>((resolve) => {
    const socket = tls.connect({ port: apiPort, host: '127.0.0.1', rejectUnauthorized: false, minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2', ciphers }, () => { resolve(socket.getCipher().name); socket.destroy() })
    socket.on('error', () => { resolve('refused') })
  })
  t.equal(await handshake('ECDHE-RSA-AES128-SHA256'), 'refused', 'a CBC-only client is refused')
  t.equal(await handshake('ECDHE-RSA-AES128-GCM-SHA256'), 'ECDHE-RSA-AES128-GCM-SHA256', 'an AEAD suite is accepted')
})
