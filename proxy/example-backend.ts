/**
 * @module proxy/example-backend
 * The tiny backend the embedded default starts, so `npm start` shows a request
 * going through the proxy to a "VM" and back.
 */
import type http from 'node:http'
import type { ListenAddress } from './config-schema.ts'

export function startExampleBackend (address: ListenAddress): Promise<http.Server> {
  // Not an ESM import of node:http (see server.ts).
  const server = process.getBuiltinModule('node:http').createServer((req, res) => {
    const body = JSON.stringify({
      message: 'Hello from the vmfront example backend',
      host: req.headers.host,
      path: req.url,
      'x-forwarded-for': req.headers['x-forwarded-for'],
      'x-forwarded-proto': req.headers['x-forwarded-proto'],
      'x-real-ip': req.headers['x-real-ip']
    }, null, 2) + '\n'
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
    res.end(body)
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(address.port, address.host, () => { resolve(server) })
  })
}
