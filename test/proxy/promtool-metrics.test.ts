// `promtool check metrics` (Prometheus' own linter, Debian package prometheus)
// reports nothing for a live /metrics that has seen traffic; vmfront_build_info is 1.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { request } from 'undici'
import { startProxyProcess, routesDoc } from '../helpers/proxy-process.ts'
import { startBackend } from '../helpers/backend.ts'
import { buildInfo } from '../../proxy/build-info.ts'

t.test('promtool check metrics accepts a live /metrics', async (t) => {
  const vm = await startBackend(t, (_req, res) => { res.end('ok') })
  const proxy = await startProxyProcess(t, {
    routes: routesDoc([{ domain: 'app.test', target: vm.origin }, { domain: 'down.test', target: 'http://127.0.0.1:1' }]),
    toml: '[[rate_profile]]\nname = "default"\nlimit_burst_requests = 50\nlimit_requests_per_second = 50'
  })
  for (const host of ['app.test', 'down.test', 'nowhere.test']) {
    const res = await request(`http://127.0.0.1:${proxy.ports.http}/`, { headers: { host } })
    await res.body.dump()
  }
  const text = await proxy.metrics()
  const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' })
  t.equal(check.error, undefined, 'promtool runs (apt-get install prometheus)')
  t.equal(check.status, 0, 'promtool exits 0')
  t.equal(check.stdout + check.stderr, '', 'promtool reports nothing')
  const info = buildInfo()
  t.match(text, `vmfront_build_info{version="${info.version}",commit="${info.commit}",node="${process.version}"} 1`, 'build info with version, commit and node')
  await proxy.stop()
})
