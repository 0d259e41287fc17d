/**
 * @module test/bench/thread-memory
 * What a worker THREAD would cost in memory, for the README's "why processes, not
 * threads" (issue 10 asks to choose by measurement): starts N worker_threads that
 * each load the proxy's code (proxy/main.ts and what it imports, as a worker process
 * does), and prints the process's RSS and PSS before and after. Compare with the idle
 * RSS/PSS per worker process of `npm run bench:workers`.
 *
 *   ./node_modules/.bin/node test/bench/thread-memory.ts [--threads 1,2,4]
 */
import { Worker } from 'node:worker_threads'
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'

const { values } = parseArgs({ options: { threads: { type: 'string', default: '1,2,4' } } })
const MAIN = join(fileURLToPath(new URL('.', import.meta.url)), '../../proxy/main.ts')

function memory (): { rss: number, pss: number } {
  const text = readFileSync('/proc/self/smaps_rollup', 'utf8')
  const kib = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? 0)
  return { rss: kib('Rss') / 1024, pss: kib('Pss') / 1024 }
}

async function measure (threads: number): Promise<string> {
  const before = memory()
  const workers: Worker[] = []
  for (let i = 0; i < threads; i++) {
    const worker = new Worker(`import(${JSON.stringify(MAIN)}).then(() => { require('node:worker_threads').parentPort.postMessage('loaded') })`, { eval: true })
    await new Promise((resolve, reject) => { worker.once('message', resolve); worker.once('error', reject) })
    workers.push(worker)
  }
  // Let lazy compilation and the first GCs settle, as the process figures do.
  await new Promise((resolve) => setTimeout(resolve, 1500))
  const after = memory()
  await Promise.all(workers.map(async (w) => await w.terminate()))
  return `| ${threads} | ${before.rss.toFixed(0)} / ${before.pss.toFixed(0)} | ${after.rss.toFixed(0)} / ${after.pss.toFixed(0)} | ${((after.pss - before.pss) / threads).toFixed(1)} |`
}

// Each count in a fresh process: a thread's code and heap are not all returned on terminate.
const counts = values.threads.split(',').map(Number)
if (process.env.VMFRONT_THREAD_MEMORY_ONE !== undefined) {
  process.stdout.write(await measure(Number(process.env.VMFRONT_THREAD_MEMORY_ONE)) + '\n')
} else {
  const { execFileSync } = await import('node:child_process')
  process.stdout.write('| threads | before MiB RSS / PSS | after MiB RSS / PSS | PSS per thread |\n| ---: | ---: | ---: | ---: |\n')
  for (const n of counts) {
    process.stdout.write(execFileSync(process.execPath, [fileURLToPath(import.meta.url)], { env: { ...process.env, VMFRONT_THREAD_MEMORY_ONE: String(n) }, encoding: 'utf8' }))
  }
}
