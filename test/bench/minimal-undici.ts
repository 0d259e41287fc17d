/**
 * @module test/bench/minimal-undici
 * The smallest useful undici proxy, the speed vmfront is measured against:
 * `request()` on a keep-alive Agent, then `writeHead` and `body.pipe(res)`
 * (`.pipe()` rather than `pipeline()`: see issue 2).
 * Usage: node test/bench/minimal-undici.ts --port PORT --target http://127.0.0.1:PORT
 */
import { createServer } from 'node:http'
import { parseArgs } from 'node:util'
import { Agent, request } from 'undici'

const { values } = parseArgs({ options: { port: { type: 'string' }, target: { type: 'string' } } })
const origin = String(values.target)
const dispatcher = new Agent({ keepAliveTimeout: 60_000 })

const server = createServer(function forward (req, res) {
  request(origin + req.url, { method: req.method as 'GET', headers: req.headers, body: req, dispatcher })
    .then(({ statusCode, headers, body }) => {
      res.writeHead(statusCode, headers as Record<string, string | string[]>)
      body.pipe(res)
    })
    .catch(() => {
      if (!res.headersSent) res.writeHead(502)
      res.end()
    })
})
server.keepAliveTimeout = 60_000
server.listen(Number(values.port), '127.0.0.1')
