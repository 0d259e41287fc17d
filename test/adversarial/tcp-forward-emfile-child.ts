// Child process of tcp-forward-emfile.test.ts: one TCP forward in this process, run
// under a low file-descriptor limit (prlimit) so that accept() fails with EMFILE.
// Prints {"port":N} once listening, then log lines as JSON.
import { createTcpForwarder } from '../../proxy/tcp-forward.ts'
import { createMetrics } from '../../proxy/metrics.ts'
import { createLogger } from '../../proxy/log.ts'
import { createLineSink } from '../../proxy/line-sink.ts'

const [listenPort, targetPort] = process.argv.slice(2).map(Number)
const logger = createLogger({ level: 'info', sink: createLineSink(process.stdout), base: {} })
const tcp = createTcpForwarder({ logger, metrics: createMetrics({ defaultMetrics: false }), connectTimeoutMs: 2000, idleTimeoutMs: 0 })
const { failed } = await tcp.apply([{ listen: { host: '127.0.0.1', port: listenPort }, rules: [{ allow: [], target: { host: '127.0.0.1', port: targetPort }, proxyProtocol: 0 }], from: 'test' }])
process.stdout.write(JSON.stringify({ msg: 'ready', failed }) + '\n')
// The connection count on demand: the parent checks it returns to 0 (no drift).
process.on('SIGUSR2', () => { process.stdout.write(JSON.stringify({ msg: 'count', open: tcp.openConnections(), status: tcp.status() }) + '\n') })
