/**
 * @module test/bench/node-server
 * A bare Node `http` server answering "ok\n" (3 bytes) with keep-alive: the
 * `bare-node` ceiling, and the backend when nginx is not installed.
 * Usage: node test/bench/node-server.ts --port PORT
 */
import { createServer } from 'node:http'
import { parseArgs } from 'node:util'

const { values } = parseArgs({ options: { port: { type: 'string' } } })
const BODY = Buffer.from('ok\n')

const server = createServer(function answer (_req, res) {
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': BODY.length })
  res.end(BODY)
})
server.keepAliveTimeout = 60_000
server.listen(Number(values.port), '127.0.0.1')
