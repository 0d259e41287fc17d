// The status page in a real headless Chromium against a real proxy process: one
// healthy VM, one down VM that answered a 502, a user certificate, a rate profile
// that limited this client, a failed then a successful reload. The DOM must carry
// the key facts, a route's attacker-chosen text must stay text, the page's own
// refresh script must run under its CSP, and a screenshot is kept under
// test/artifacts/ (gitignored) for a person to look at.
import t from 'tap'
import { spawn, spawnSync } from 'node:child_process'
import { mkdirSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { issueTestCert } from '../helpers/pebble.ts'
import { startProxyProcess, routesDoc, tempDir, ROOT } from '../helpers/proxy-process.ts'
import { startBackend, deadPort } from '../helpers/backend.ts'
import { request } from 'undici'

const CHROMIUM = 'chromium'
const ARTIFACTS = join(ROOT, 'test/artifacts')
const INJECTED = '<script>document.title="pwned"</script>'

interface Teardown { teardown (fn: () => unknown): void }

/** Runs headless Chromium once with a fresh profile; killed (its process group, by PID) at teardown or after `timeoutMs`. */
async function chromium (t: Teardown, args: string[], timeoutMs = 45_000): Promise<{ code: number | null, stdout: string, stderr: string }> {
  const profile = tempDir(t, 'vmfront-chromium-')
  const child = spawn(CHROMIUM, ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-dev-shm-usage', '--hide-scrollbars', `--user-data-dir=${profile}`, ...args], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
  const kill = (): void => {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try { process.kill(-child.pid, 'SIGKILL') } catch { /* already gone */ }
    }
  }
  t.teardown(kill)
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d })
  child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
  const timer = setTimeout(kill, timeoutMs)
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', (c) => { resolve(c) })
  })
  clearTimeout(timer)
  return { code, stdout, stderr }
}

t.test('status page in headless Chromium', async (t) => {
  // Not a skip: CI installs it, and a missing browser must not pass unnoticed.
  if (!t.ok(spawnSync(CHROMIUM, ['--version']).status === 0, 'chromium is installed (Debian package chromium; .ci/run installs it)')) return
  const dir = tempDir(t)
  const vm = await startBackend(t, (_req, res) => { res.end('hello from the VM\n') })
  const down = await deadPort()

  const ca = issueTestCert({ isCa: true, commonName: 'vmfront status test CA' })
  const notAfter = new Date(Date.now() + 30 * 86_400_000 + 3_600_000)
  const leaf = issueTestCert({ issuer: ca, dnsNames: ['ok.test'], notAfter, notBefore: new Date(Date.now() - 86_400_000) })
  writeFileSync(join(dir, 'ok.crt'), leaf.certPem)
  writeFileSync(join(dir, 'ok.key'), leaf.keyPem, { mode: 0o600 })
  const extra = join(dir, 'extra.toml')
  writeFileSync(extra, `[[certificate]]\ndomains = ["ok.test"]\ncertfile = ${JSON.stringify(join(dir, 'ok.crt'))}\nkeyfile = ${JSON.stringify(join(dir, 'ok.key'))}\n`)

  const routes = routesDoc([
    { domain: 'ok.test', target: vm.origin, vm: 'web-1', rate_profile: 'strict' },
    { domain: 'down.test', target: `http://127.0.0.1:${down}`, vm: 'db-2' },
    { domain: 'odd.test', target: vm.origin, vm: INJECTED }
  ])
  const proxy = await startProxyProcess(t, {
    routes,
    listen: '[listen]\nhttp = "127.0.0.1:0"\nhttps = "127.0.0.1:0"\nadmin = "127.0.0.1:0"',
    toml: `[tls]\nextra_certs_file = ${JSON.stringify(extra)}\n[[rate_profile]]\nname = "strict"\nlimit_burst_requests = 2\nlimit_requests_per_second = 0.01\n`
  })
  const base = `http://127.0.0.1:${proxy.ports.http}/`
  const get = async (host: string): Promise<number> => {
    const res = await request(base, { headers: { host } })
    await res.body.text()
    return res.statusCode
  }
  t.equal(await get('down.test'), 502, 'the down VM gives a 502')
  const statuses = [await get('ok.test'), await get('ok.test'), await get('ok.test')]
  t.same(statuses, [200, 200, 429], 'this client is rate limited on ok.test')

  // A broken route file (kept out), then a good one: the page shows both.
  proxy.writeRoutes('{"version": 1, "routes": [{"domain": "bad.test", "target": "nowhere"}]}')
  t.equal((await proxy.reload()).msg, 'route reload failed: still serving the previous table')
  const routes2 = routesDoc([...(routes as { routes: Array<Record<string, unknown>> }).routes, { domain: 'new.test', target: vm.origin }])
  proxy.writeRoutes(routes2)
  t.equal((await proxy.reload()).msg, 'routes loaded')

  const admin = `http://127.0.0.1:${proxy.ports.admin}/`
  const status = await (await fetch(`${admin}status`)).json() as { reload: { lastSuccessAt: string }, reload_last_failure: { errors: Array<{ path: string, message: string }> }, upstream_errors: { total: number, recent: Array<Record<string, unknown>> } }
  t.equal(status.upstream_errors.total, 1, '/status counts the upstream error')
  t.match(status.upstream_errors.recent[0], { domain: 'down.test', reason: 'refused', status: 502, at: /^\d{4}-\d\d-\d\dT/ }, '/status lists it, with an ISO time')
  const failure = status.reload_last_failure.errors[0]!
  const successShown = status.reload.lastSuccessAt.replace('T', ' ').replace(/\.\d+Z$/, 'Z')

  const dump = await chromium(t, ['--dump-dom', admin])
  t.equal(dump.code, 0, `chromium exits 0${dump.code === 0 ? '' : `: ${dump.stderr.slice(-1000)}`}`)
  const dom = dump.stdout
  t.match(dom, '<title>vmfront status</title>', 'the injected VM name did not run (title unchanged)')
  t.match(dom, /<h2>Routes <span class="muted">\(4\)<\/span><\/h2>/, 'route count')
  t.match(dom, /<td class="mono">down\.test<\/td><td class="mono">http:\/\/127\.0\.0\.1:\d+<\/td><td>db-2<\/td><td>default<\/td><td><span class="badge bad">refused → 502<\/span>/, 'the failing route shows its error')
  t.match(dom, `ECONNREFUSED 127.0.0.1:${down}`, 'with the transport message')
  t.match(dom, /<td class="mono">ok\.test<\/td>[^]*?no upstream error seen/, 'the healthy route')
  t.match(dom, /<td class="mono">ok\.test<\/td><td>extra<\/td><td>[^<]*<\/td><td>[^]*?<\/td><td class="num ok">30<\/td>/, 'certificate source and days left')
  t.match(dom, successShown, 'last successful reload time')
  t.match(dom, `${failure.path}</span>: ${failure.message.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')}`, 'the last failed reload and why')
  t.match(dom, /<td class="mono">127\.0\.0\.1<\/td><td>strict<\/td>/, 'the rate-limited IP among the busiest')
  t.match(dom, `<td class="num">${proxy.child.pid}</td>`, 'the worker pid')
  t.match(dom, '&lt;script&gt;document.title="pwned"&lt;/script&gt;', 'the VM name shown as text')
  t.match(dom, '<label id="refresh">', 'the refresh script ran under the CSP (unhid its control)')

  mkdirSync(ARTIFACTS, { recursive: true })
  const png = join(ARTIFACTS, 'status-page.png')
  const shot = await chromium(t, [`--screenshot=${png}`, '--window-size=1280,2000', admin])
  t.equal(shot.code, 0, 'screenshot taken')
  t.ok(statSync(png).size > 20_000, `screenshot saved: ${png}`)
})
