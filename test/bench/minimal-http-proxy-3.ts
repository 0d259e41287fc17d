/**
 * @module test/bench/minimal-http-proxy-3
 * The smallest useful http-proxy-3 proxy, the baseline vmfront must beat:
 * every request goes to one target over a keep-alive agent.
 * Usage: node test/bench/minimal-http-proxy-3.ts --port PORT --target http://127.0.0.1:PORT
 */
import { Agent, createServer } from 'node:http'
import { parseArgs } from 'node:util'
import { createProxyServer } from 'http-proxy-3'

const { values } = parseArgs({ options: { port: { type: 'string' }, target: { type: 'string' } } })

const agent = new Agent({ keepAlive: true, maxSockets: 256 })
const proxy = createProxyServer({ target: values.target, agent })
proxy.on('error', (_err, _req, res) => {
  if ('writeHead' in res && !res.headersSent) res.writeHead(502)
  res.end()
})

const server = createServer(function forward (req, res) { proxy.web(req, res) })
server.keepAliveTimeout = 60_000
server.listen(Number(values.port), '127.0.0.1')
