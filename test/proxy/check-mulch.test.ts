// `vmfront check --mulch-config` (SPEC §13): a Mulch installation checked as
// `vmfront proxy --mulch-config` would read it, problems named by mulchd.toml's keys.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { CLI, NODE, ROOT, tempDir } from '../helpers/proxy-process.ts'

function check (args: string[]): { status: number | null, stdout: string, stderr: string } {
  const r = spawnSync(NODE, [CLI, 'check', ...args], { encoding: 'utf8', cwd: ROOT, timeout: 20_000 })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

t.test('a valid Mulch installation, its domains and port files included', async (t) => {
  const dir = tempDir(t)
  const data = join(dir, 'data')
  mkdirSync(data)
  writeFileSync(join(dir, 'mulchd.toml'), `data_path = "${data}"\nproxy_listen_http = "127.0.0.1:18080"\nproxy_listen_https = "127.0.0.1:18443"\n`)
  writeFileSync(join(data, 'mulch-proxy-domains.db'), JSON.stringify({ 'a.test': { Name: 'a.test', VMName: 'a', RedirectTo: '', RedirectCode: 0, DestinationHost: '10.0.0.5', DestinationPort: 80, RedirectToHTTPS: false, RateProfile: '', TargetURL: '', Chained: false } }) + '\n')
  writeFileSync(join(data, 'mulch-proxy-ports-v2.db'), '{}\n')
  const r = check(['--mulch-config', dir])
  t.equal(r.status, 0, r.stdout + r.stderr)
  t.match(r.stdout, `vmfront check: ${dir} is valid: 1 route (mulch-legacy format)`)
  t.notOk(existsSync(join(data, 'mulch-proxy-last.pid')), 'nothing written')
})

t.test('problems name mulchd.toml\'s keys and lines, and the files under data_path', async (t) => {
  const dir = tempDir(t)
  const data = join(dir, 'data')
  mkdirSync(data)
  writeFileSync(join(dir, 'mulchd.toml'), `data_path = "${data}"\nproxy_listen_http = "127.0.0.1:18080"\nproxy_bogus = 1\n`)
  const bad = check(['--mulch-config', dir, '--json'])
  t.equal(bad.status, 2)
  const report = JSON.parse(bad.stdout) as { ok: boolean, problems: Array<{ file: string, line?: number, key: string, message: string }> }
  t.equal(report.ok, false)
  t.same(report.problems.map((p) => [p.file, p.line, p.key]), [[join(dir, 'mulchd.toml'), 3, 'proxy_bogus']])
  t.match(report.problems[0].message, /^is not a setting mulch-proxy knows/)

  writeFileSync(join(dir, 'mulchd.toml'), `data_path = "${data}"\nproxy_listen_http = "127.0.0.1:18080"\nproxy_listen_https = "127.0.0.1:18443"\n`)
  writeFileSync(join(data, 'mulch-proxy-ports-v2.db'), '{"2222": {"ListenAddr": {"IP": "0.0.0.0", "Port": 2222, "Zone": ""}, "Forwards": {"*": {"Dest": {"IP": "10.0.0.5", "Port": 0, "Zone": ""}, "PROXYProtoPort": 0}}}}\n')
  const ports = check(['--mulch-config', dir])
  t.equal(ports.status, 2)
  t.match(ports.stdout, `${join(data, 'mulch-proxy-ports-v2.db')}:1: $["2222"].Forwards["*"].Dest.Port: must be a port number (1-65535), not 0`)

  const missing = check(['--mulch-config', join(dir, 'nowhere')])
  t.equal(missing.status, 2)
  t.match(missing.stdout, 'cannot read the Mulch configuration: no such file or directory')
  for (const text of [bad.stdout, ports.stdout, missing.stdout, missing.stderr]) {
    t.notMatch(text, /undefined|ENOENT|\n\s+at /, 'no JavaScript internals')
  }
})
