/**
 * @module test/bench/workers-control
 * The control of `npm run bench:workers`: the minimal undici proxy
 * (minimal-undici.ts, unchanged) in N processes under node:cluster, sharing one
 * listening socket as vmfront's workers do (SCHED_NONE: every process accepts from
 * the one queue). Measured the same way, it shows what N Node processes on one core
 * cost by themselves, so vmfront's ratio can be read against it.
 * Usage: node test/bench/workers-control.ts --port PORT --target URL --workers N
 */
import cluster from 'node:cluster'
import { join } from 'node:path'
import { parseArgs } from 'node:util'

const { values } = parseArgs({ options: { port: { type: 'string' }, target: { type: 'string' }, workers: { type: 'string', default: '2' } } })
cluster.schedulingPolicy = cluster.SCHED_NONE
cluster.setupPrimary({ exec: join(import.meta.dirname, 'minimal-undici.ts'), args: ['--port', String(values.port), '--target', String(values.target)] })
for (let i = 0; i < Number(values.workers); i++) cluster.fork()
// A worker that dies is not replaced: the bench reads the failure as errors.
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => { for (const w of Object.values(cluster.workers ?? {})) w?.kill(); process.exit(0) })
