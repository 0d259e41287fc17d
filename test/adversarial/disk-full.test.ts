// Issue 9 point 5: a full or unwritable data_dir with ACME on must not keep the proxy from
// serving. HTTP routes, user certificates and the self-signed fallback serve at once; ACME
// retries with backoff and /status says why in words; dumps fail without leaving temporary
// files; once the disk has room again, certificates are ordered as usual.
// Three variants: a real full tmpfs (ENOSPC; needs root to mount, skipped with a reason
// otherwise), and two that any user can run: a file where the acme folder should be, and a
// file-size limit of 0 (`ulimit -f 0`, EFBIG) for every write.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import { join } from 'node:path'
import tls from 'node:tls'
import t, { type Test } from 'tap'
import { startBackend } from '../helpers/backend.ts'
import { canMount, listFiles, mountFullTmpfs, startProxyWithConfig, type RawProxy } from '../helpers/disk-full.ts'
import { freePort, issueTestCert, pollUntil, startPebble } from '../helpers/pebble.ts'
import { tempDir } from '../helpers/proxy-process.ts'

/** What /status must never show a person. */
const INTERNALS = /undefined|Cannot read|is not a function|ENOSPC|ENOTDIR|EFBIG|\bat \w+ \(/

interface Peer { authorized: boolean, subject: string, serial: string }

function handshake (port: number, servername: string, ca?: string): Promise<Peer> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ port, host: '127.0.0.1', servername, ca, rejectUnauthorized: false }, () => {
      const c = s.getPeerCertificate()
      resolve({ authorized: s.authorized, subject: String(c.subject?.CN ?? ''), serial: c.serialNumber })
      s.destroy()
    })
    s.setTimeout(10_000, () => { s.destroy(new Error('handshake timeout')) })
    s.on('error', reject)
  })
}

function get (port: number, host: string, path = '/'): Promise<{ status: number, body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, headers: { host }, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { body += c })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body }) })
    })
    req.setTimeout(10_000, () => { req.destroy(new Error('request timeout')) })
    req.on('error', reject)
  })
}

interface Setup { dir: string, dataDir: string, config: (acmeToml: string, httpPort?: number) => string, userCa: string }

/** Routes (app.test to a VM), a user certificate for user.test, and a config writer; pid_file sits in data_dir as by default. */
async function prepare (t: Test, dataDir?: string): Promise<Setup> {
  const dir = tempDir(t)
  const data = dataDir ?? join(dir, 'data')
  const vm = await startBackend(t)
  const routes = join(dir, 'routes.json')
  writeFileSync(routes, JSON.stringify({ version: 1, routes: [{ domain: 'app.test', target: vm.origin }] }))
  const ca = issueTestCert({ isCa: true, commonName: 'disk-full user CA' })
  const leaf = issueTestCert({ issuer: ca, dnsNames: ['user.test'] })
  writeFileSync(join(dir, 'user.crt'), leaf.certPem)
  writeFileSync(join(dir, 'user.key'), leaf.keyPem, { mode: 0o600 })
  writeFileSync(join(dir, 'extra.toml'), `[[certificate]]\ndomains = ["user.test"]\ncertfile = ${JSON.stringify(join(dir, 'user.crt'))}\nkeyfile = ${JSON.stringify(join(dir, 'user.key'))}\n`)
  return {
    dir,
    dataDir: data,
    userCa: ca.certPem,
    config: (acmeToml, httpPort) => [
      `data_dir = ${JSON.stringify(data)}`,
      `routes_file = ${JSON.stringify(routes)}`,
      `pid_file = ${JSON.stringify(join(data, 'proxy.pid'))}`,
      `[listen]\nhttp = "127.0.0.1:${httpPort ?? 0}"\nhttps = "127.0.0.1:0"\nadmin = "127.0.0.1:0"`,
      `[tls]\nextra_certs_file = ${JSON.stringify(join(dir, 'extra.toml'))}`,
      acmeToml
    ].join('\n') + '\n'
  }
}

/** Everything that must work while ACME cannot: HTTP, the user certificate, the fallback, /status in words. */
async function assertServingWithoutAcme (t: Test, proxy: RawProxy, s: Setup, reason: RegExp): Promise<void> {
  const res = await get(proxy.ports.http, 'app.test', '/hello')
  t.equal(res.status, 200, 'HTTP routes are served')
  t.match(res.body, /"url":"\/hello"/, 'by the VM')
  const user = await handshake(proxy.ports.https, 'user.test', s.userCa)
  t.ok(user.authorized, 'the user certificate is served')
  t.match((await handshake(proxy.ports.https, 'app.test')).subject, /vmfront fallback/, 'a routed name without a certificate gets the fallback')
  const status = await proxy.status()
  const acme = status.acme as { ready: boolean, lastError?: string, retryAt?: string }
  t.equal(acme.ready, false, '/status: ACME not ready')
  t.match(acme.lastError, reason, '/status says why, in words')
  t.ok(acme.retryAt, '/status says when it tries again')
  t.notMatch(JSON.stringify({ acme, certificates: status.certificates }), INTERNALS, 'no codes or JavaScript internals in /status')
  const logged = proxy.logs.find((l) => l.msg === 'ACME unavailable: serving without it, retrying')
  t.match(logged?.reason, reason, 'the log says why')
}

t.test('data_dir on a full tmpfs (ENOSPC)', { skip: canMount() ? false : 'needs root to mount a tmpfs; the two variants below cover the same paths without root' }, async (t) => {
  const base = tempDir(t)
  const dataDir = join(base, 'data')
  const disk = mountFullTmpfs(t, dataDir, 256)
  const s = await prepare(t, dataDir)
  const httpPort = await freePort()
  const pebble = await startPebble({ httpPort })
  t.teardown(() => pebble.stop())
  const proxy = await startProxyWithConfig(t, join(s.dir, 'proxy.toml'), s.config(
    `[acme]\nenabled = true\ndirectory_url = ${JSON.stringify(pebble.directoryUrl)}\nca_file = ${JSON.stringify(pebble.caFile)}`, httpPort))
  t.pass('the proxy started on a full disk')
  t.ok(proxy.logs.some((l) => l.msg === 'cannot write the pid file: serving anyway, but the daemon cannot signal this proxy' && l.reason === 'no space left on device'), 'the pid file failure is logged in words')
  await assertServingWithoutAcme(t, proxy, s, /^cannot write the ACME account key to .*\/data\/acme\/[^/]+\/account\.key: no space left on device$/)

  const dump = await fetch(`http://127.0.0.1:${proxy.ports.admin}/debug/dump`)
  t.equal(dump.status, 500)
  t.match((await dump.json() as { error: string }).error, /^cannot write the diagnostic dump to .*: no space left on device$/)
  const from = proxy.logs.length
  proxy.child.kill('SIGUSR2')
  await proxy.waitForLog((l) => l.msg === 'diagnostic dump failed', 10_000, from)
  t.same(listFiles(dataDir), ['fill'], 'no temporary file left by the account key, pid file or dump writes')

  disk.free()
  await pollUntil(async () => ((await proxy.status()).acme as { ready: boolean }).ready, 15_000, 'ACME ready once the disk has room')
  const root = await pebble.rootPem()
  let issued: Peer | undefined
  await pollUntil(async () => {
    issued = await handshake(proxy.ports.https, 'app.test', root)
    return issued.authorized
  }, 30_000, 'a Pebble certificate for app.test')
  t.ok(issued?.authorized, 'after the disk has room, the routed name gets its ACME certificate')
  const done = await fetch(`http://127.0.0.1:${proxy.ports.admin}/debug/dump`)
  t.equal(done.status, 200, 'dumps work again')
  t.equal(await proxy.stop(), 0)
})

t.test('a file where the acme folder should be (any user)', async (t) => {
  const s = await prepare(t)
  mkdirSync(s.dataDir, { recursive: true })
  writeFileSync(join(s.dataDir, 'acme'), 'not a folder')
  const proxy = await startProxyWithConfig(t, join(s.dir, 'proxy.toml'), s.config('[acme]\nenabled = true\ndirectory_url = "https://127.0.0.1:9/dir"'))
  await assertServingWithoutAcme(t, proxy, s, /^cannot read the ACME account key at .*\/data\/acme\/[^/]+\/account\.key: not a directory$/)
  rmSync(join(s.dataDir, 'acme'))
  await pollUntil(async () => ((await proxy.status()).acme as { ready: boolean }).ready, 15_000, 'ACME ready once the file is gone')
  // The line travels on stdout, the status on the admin socket: either may arrive first.
  t.ok(await proxy.waitForLog((l) => l.msg === 'ACME available again', 5000), 'recovery logged')
  t.equal(await proxy.stop(), 0)
})

t.test('no file can grow (ulimit -f 0, any user)', async (t) => {
  const s = await prepare(t)
  const proxy = await startProxyWithConfig(t, join(s.dir, 'proxy.toml'), s.config('[acme]\nenabled = true\ndirectory_url = "https://127.0.0.1:9/dir"'), { fileSizeLimitKb: 0 })
  t.pass('the proxy started although no file can be written')
  await assertServingWithoutAcme(t, proxy, s, /^cannot write the ACME account key to .*\/data\/acme\/[^/]+\/account\.key: file too large$/)
  const dump = await fetch(`http://127.0.0.1:${proxy.ports.admin}/debug/dump`)
  t.match((await dump.json() as { error: string }).error, /^cannot write the diagnostic dump to .*: file too large$/)
  // Retries back off: a second failure comes later than the first retry time, and logs again.
  await proxy.waitForLog((l) => l.msg === 'ACME unavailable: serving without it, retrying' && l.failures === 2, 10_000)
  t.same(listFiles(s.dataDir), [], 'no temporary file left behind')
  t.equal(await proxy.stop(), 0)
})
