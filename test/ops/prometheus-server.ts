/**
 * A real Prometheus server (Debian package `prometheus`) for tests: loopback only, a temp
 * config and TSDB, killed by PID at teardown (followProcess). Queries go to its HTTP API.
 */
import { spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { deadPort } from '../helpers/backend.ts'
import { followProcess } from '../helpers/process-logs.ts'
import { pollUntil } from '../helpers/pebble.ts'
import { tempDir } from '../helpers/proxy-process.ts'

interface Teardown { teardown (fn: () => unknown): void }

export interface PrometheusServer {
  url: string
  stderr: () => string
  /** GET /api/v1/PATH with query parameters; rejects unless the API says "success". */
  api (path: string, params?: Record<string, string | string[]>): Promise<any>
}

export interface PrometheusOptions {
  /** host:port of each scrape target (scraped every second at /metrics). */
  targets: string[]
  job?: string
  ruleFiles?: string[]
}

export async function startPrometheus (t: Teardown, options: PrometheusOptions): Promise<PrometheusServer> {
  const dir = tempDir(t, 'vmfront-prometheus-')
  const port = await deadPort()
  const config = join(dir, 'prometheus.yml')
  // JSON is YAML: no YAML writer needed.
  writeFileSync(config, JSON.stringify({
    global: { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' },
    rule_files: options.ruleFiles ?? [],
    scrape_configs: [{ job_name: options.job ?? 'vmfront', static_configs: [{ targets: options.targets }] }]
  }))
  const child = spawn('prometheus', [
    `--config.file=${config}`,
    `--storage.tsdb.path=${join(dir, 'data')}`,
    `--web.listen-address=127.0.0.1:${port}`,
    '--log.level=warn'
  ], { stdio: ['ignore', 'pipe', 'pipe'] })
  const spawned = new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve)
    child.once('error', (err) => { reject(new Error(`cannot start prometheus (apt-get install prometheus): ${err.message}`)) })
  })
  const followed = followProcess(t, child, 'prometheus')
  await spawned
  const url = `http://127.0.0.1:${port}`
  try {
    await pollUntil(async () => child.exitCode === null && (await fetch(`${url}/-/ready`)).status === 200, 15_000, 'prometheus to be ready')
  } catch (err) {
    throw new Error(`${(err as Error).message}; prometheus stderr: ${followed.stderr()}`)
  }
  return {
    url,
    stderr: followed.stderr,
    async api (path, params = {}) {
      const query = new URLSearchParams()
      for (const [k, v] of Object.entries(params)) for (const one of Array.isArray(v) ? v : [v]) query.append(k, one)
      const res = await fetch(`${url}/api/v1/${path}?${query.toString()}`)
      const body = await res.json() as { status: string, data?: unknown, error?: string, errorType?: string }
      if (body.status !== 'success') throw new Error(`prometheus /api/v1/${path} ${query.toString()}: ${body.errorType ?? res.status}: ${body.error ?? ''}`)
      return body.data
    }
  }
}
