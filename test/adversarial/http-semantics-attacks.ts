/**
 * @module test/adversarial/http-semantics-attacks
 * A flood of client mistakes (issue 9, point 10) as a function a torture runner calls
 * at full scale and the regression test calls small: duplicate Host, OPTIONS *,
 * CONNECT, foreign HTTP versions, bad absolute-form targets, a valid request pipelined
 * before a malformed one, and a chunked body that breaks. Every answer must be the
 * client-error status of its kind (the pipelined valid one: 200 first); the caller
 * checks the proxy's metrics (no upstream error) and what the VM saw.
 *
 * Full scale from the command line (one JSON object):
 *   ./node_modules/.bin/node test/adversarial/http-semantics-attacks.ts --port P --host app.test [--rounds 2000] [--concurrency 50]
 */
import net from 'node:net'
import { parseArgs } from 'node:util'

/** One kind of mistake: the bytes, and the status line(s) the proxy must answer, in order. */
interface Mistake {
  readonly name: string
  readonly text: (host: string) => string
  readonly expect: readonly number[]
}

export const MISTAKES: readonly Mistake[] = [
  { name: 'duplicate Host', text: (h) => `GET / HTTP/1.1\r\nHost: ${h}\r\nHost: other.invalid\r\n\r\n`, expect: [400] },
  { name: 'OPTIONS *', text: (h) => `OPTIONS * HTTP/1.1\r\nHost: ${h}\r\n\r\n`, expect: [400] },
  { name: 'CONNECT', text: (h) => `CONNECT ${h}:443 HTTP/1.1\r\nHost: ${h}:443\r\n\r\n`, expect: [405] },
  { name: 'HTTP/2.0 request line', text: (h) => `GET / HTTP/2.0\r\nHost: ${h}\r\n\r\n`, expect: [505] },
  { name: 'HTTP/3.0 request line', text: (h) => `GET / HTTP/3.0\r\nHost: ${h}\r\n\r\n`, expect: [505] },
  { name: 'absolute-form with userinfo', text: (h) => `GET http://user@${h}/ HTTP/1.1\r\nHost: ${h}\r\n\r\n`, expect: [400] },
  { name: 'pipelined valid, then folded header', text: (h) => `GET /ok HTTP/1.1\r\nHost: ${h}\r\n\r\nGET /bad HTTP/1.1\r\nHost: ${h}\r\nX: a\r\n b\r\n\r\n`, expect: [200, 400] },
  { name: 'broken chunked body', text: (h) => `POST /up HTTP/1.1\r\nHost: ${h}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n`, expect: [400] }
]

export interface MistakeFloodStats {
  sent: number
  /** Connections whose status lines were not exactly the expected ones, by mistake name. */
  unexpected: Record<string, number>
  /** One example of an unexpected answer per mistake (the status lines seen). */
  examples: Record<string, string>
  /** Valid pipelined requests sent (each may reach the VM once). */
  validRequests: number
  ms: number
}

function exchange (port: number, text: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    let data = ''
    const timer = setTimeout(() => { socket.destroy() }, timeoutMs)
    socket.setEncoding('latin1')
    socket.on('data', (c: string) => { data += c })
    socket.on('error', () => {})
    socket.on('close', () => { clearTimeout(timer); resolve(data) })
    socket.write(text)
  })
}

/** The status of every response on the connection (a body may end right before the next status line). */
function statusLines (data: string): number[] {
  const out: number[] = []
  const re = /HTTP\/1\.1 (\d{3}) /g
  for (let m = re.exec(data); m !== null; m = re.exec(data)) out.push(Number(m[1]))
  return out
}

/** Sends `rounds` × every mistake, `concurrency` connections at a time. */
export async function clientMistakeFlood (options: { port: number, host: string, rounds: number, concurrency?: number, timeoutMs?: number }): Promise<MistakeFloodStats> {
  const started = performance.now()
  const jobs: Mistake[] = []
  for (let r = 0; r < options.rounds; r++) jobs.push(...MISTAKES)
  const stats: MistakeFloodStats = { sent: 0, unexpected: {}, examples: {}, validRequests: 0, ms: 0 }
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < jobs.length) {
      const mistake = jobs[next++]
      const seen = statusLines(await exchange(options.port, mistake.text(options.host), options.timeoutMs ?? 5000))
      stats.sent++
      if (mistake.expect[0] === 200) stats.validRequests++
      if (seen.length !== mistake.expect.length || seen.some((s, i) => s !== mistake.expect[i])) {
        stats.unexpected[mistake.name] = (stats.unexpected[mistake.name] ?? 0) + 1
        stats.examples[mistake.name] ??= seen.join(',')
      }
    }
  }
  await Promise.all(Array.from({ length: options.concurrency ?? 20 }, worker))
  stats.ms = Math.round(performance.now() - started)
  return stats
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { port: { type: 'string' }, host: { type: 'string', default: 'app.test' }, rounds: { type: 'string', default: '2000' }, concurrency: { type: 'string', default: '50' } } })
  if (values.port === undefined) {
    process.stderr.write('usage: http-semantics-attacks.ts --port PORT [--host HOST] [--rounds N] [--concurrency N]\n')
    process.exit(2)
  }
  const stats = await clientMistakeFlood({ port: Number(values.port), host: values.host, rounds: Number(values.rounds), concurrency: Number(values.concurrency) })
  process.stdout.write(JSON.stringify(stats) + '\n')
}
