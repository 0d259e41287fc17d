// The shipped Prometheus files pass Prometheus' own checks (Debian package prometheus):
// `promtool check rules` on the alerts, `promtool test rules` on their unit tests (a
// certificate 2 days from expiry pages, 30 days does not, a failing reload fires, ...),
// and `promtool check config` on the sample scrape config that loads them. Their labels and
// annotations are checked, as Prometheus loaded them, in dashboard-prometheus.test.ts.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { ROOT } from '../helpers/proxy-process.ts'

const EXAMPLES = join(ROOT, 'examples')

function promtool (args: string[]): { status: number | null, output: string } {
  const run = spawnSync('promtool', args, { cwd: EXAMPLES, encoding: 'utf8', timeout: 30_000 })
  if (run.error !== undefined) throw new Error(`promtool cannot run (apt-get install prometheus): ${run.error.message}`)
  return { status: run.status, output: run.stdout + run.stderr }
}

t.test('promtool check rules accepts examples/prometheus-alerts.yml', async (t) => {
  const { status, output } = promtool(['check', 'rules', 'prometheus-alerts.yml'])
  t.equal(status, 0, output)
  t.match(output, /SUCCESS: \d+ rules found/)
})

t.test('promtool test rules: the alerts fire (and stay quiet) as their unit tests say', async (t) => {
  const { status, output } = promtool(['test', 'rules', 'prometheus-alerts.test.yml'])
  t.equal(status, 0, output)
  t.match(output, /SUCCESS/)
})

t.test('promtool check config accepts examples/prometheus.yml and the rules it loads', async (t) => {
  const { status, output } = promtool(['check', 'config', 'prometheus.yml'])
  t.equal(status, 0, output)
  t.match(output, /SUCCESS: 1 rule files found/)
})
