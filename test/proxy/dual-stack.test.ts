// SPEC §13: a listen address written ":port" takes IPv6 and IPv4 clients (dual
// stack). A real proxy on ":0", reached over [::1] and 127.0.0.1 with raw bytes.
import t from 'tap'
import net from 'node:net'
import { startBackend } from '../helpers/backend.ts'
import { startProxyProcess, routesDoc } from '../helpers/proxy-process.ts'
import { parseListenAddress } from '../../proxy/config-schema.ts'

function get (host: string, port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port })
    let data = ''
    const timer = setTimeout(() => { socket.destroy(); reject(new Error(`no answer from ${host}`)) }, 5000)
    socket.setEncoding('latin1')
    socket.on('data', (c: string) => { data += c })
    socket.on('error', (err) => { clearTimeout(timer); reject(err) })
    socket.on('close', () => { clearTimeout(timer); resolve(data) })
    socket.write(`GET ${path} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n`)
  })
}

t.test('":port" parses as every address, dual stack; explicit hosts stay as written', async (t) => {
  t.same(parseListenAddress(':8080'), { host: '::', port: 8080, anyHost: true })
  t.same(parseListenAddress('0.0.0.0:80'), { host: '0.0.0.0', port: 80 })
  t.same(parseListenAddress('[::1]:80'), { host: '::1', port: 80 })
})

t.test('":0" serves clients over [::1] and 127.0.0.1 (http and admin)', async (t) => {
  const vm = await startBackend(t)
  const proxy = await startProxyProcess(t, {
    routes: routesDoc([{ domain: 'app.test', target: vm.origin }]),
    listen: '[listen]\nhttp = ":0"\nhttps = ""\nadmin = ":0"'
  })
  const port = proxy.ports.http
  t.match(await get('::1', port, '/v6'), /^HTTP\/1\.1 200 /, 'reached over IPv6')
  t.match(await get('127.0.0.1', port, '/v4'), /^HTTP\/1\.1 200 /, 'reached over IPv4')
  const v4 = await proxy.waitForLog((l) => l.msg === 'access' && l.path === '/v4')
  t.equal(v4.client, '127.0.0.1', 'an IPv4 client is logged as IPv4, not ::ffff:')
  t.equal(vm.requests.find((r) => r.url === '/v4')?.headers['x-real-ip'], '127.0.0.1', 'and sent to the VM as IPv4')
  const v6 = await proxy.waitForLog((l) => l.msg === 'access' && l.path === '/v6')
  t.equal(v6.client, '::1')
  t.match(await get('::1', proxy.ports.admin, '/healthz'), /^HTTP\/1\.1 200 /, 'admin over IPv6')
  t.match(await get('127.0.0.1', proxy.ports.admin, '/healthz'), /^HTTP\/1\.1 200 /, 'admin over IPv4')
})
