// PROXY protocol v1 and v2 headers read by a real HAProxy (Debian package
// `haproxy`, SPEC §11): HAProxy listens with `accept-proxy` on loopback and answers
// each request with the client address it read from the header.
import t from 'tap'
import { spawn, spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import net from 'node:net'
import { tempDir } from '../helpers/proxy-process.ts'
import { pollUntil } from '../helpers/pebble.ts'
import { connectFrom, freePort, mulchPort, readToEnd, startTcpProxy } from '../helpers/tcp-forward.ts'

const HAPROXY = ['/usr/sbin/haproxy', '/usr/bin/haproxy'].find((p) => spawnSync(p, ['-v']).status === 0)

/** Starts HAProxy in the foreground: `accept-proxy` on `port`, echoing src/dst as text. */
async function startHaproxy (t: { teardown (fn: () => unknown): void }, port: number): Promise<void> {
  const dir = tempDir(t, 'vmfront-haproxy-')
  const cfg = join(dir, 'haproxy.cfg')
  writeFileSync(cfg, [
    'global',
    '  maxconn 100',
    'defaults',
    '  mode http',
    '  timeout connect 2s',
    '  timeout client 5s',
    '  timeout server 5s',
    'frontend fe',
    `  bind 127.0.0.1:${port} accept-proxy`,
    '  http-request return status 200 content-type text/plain lf-string "src=%[src] sport=%[src_port] dst=%[dst] dport=%[dst_port]\\n"',
    ''
  ].join('\n'))
  const child = spawn(HAPROXY!, ['-db', '-f', cfg], { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (c: Buffer) => { output += c.toString() })
  child.stderr.on('data', (c: Buffer) => { output += c.toString() })
  t.teardown(() => { child.kill('SIGKILL') })
  await pollUntil(() => new Promise<boolean>((resolve) => {
    if (child.exitCode !== null) throw new Error(`haproxy exited: ${output}`)
    const s = net.connect(port, '127.0.0.1')
    s.once('connect', () => { s.destroy(); resolve(true) })
    s.once('error', () => { resolve(false) })
  }), 5000, `haproxy listening on ${port}`)
}

/** An HTTP request through the forward from `source`; returns HAProxy's answer body and the client's port. */
async function askFrom (port: number, source: string, host = '127.0.0.1'): Promise<{ body: string, localPort: number }> {
  const s = await connectFrom(port, source, host)
  const localPort = s.localPort!
  s.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  const r = await readToEnd(s)
  const text = r.data.toString()
  return { body: text.slice(text.indexOf('\r\n\r\n') + 4), localPort }
}

t.test('PROXY v1 (Mulch PROXYProtoPort) and v2 (route file) are read by a real HAProxy', async (t) => {
  // Not skipped when missing: a skip would count as passing.
  if (HAPROXY === undefined) throw new Error('haproxy is not installed (apt-get install haproxy; .ci/run installs it)')
  const haPort = await freePort()
  await startHaproxy(t, haPort)
  const [mulchListen, v1Listen, v2Listen, v6Listen, v6v1Listen] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()]
  // Mulch: connect to PROXYProtoPort, the header names Dest.Port (443 here).
  await startTcpProxy(t, mulchPort(mulchListen, { '*': [443, haPort] }), {
    routes: {
      version: 1,
      routes: [],
      ports: [
        { listen: `127.0.0.1:${v1Listen}`, target: `127.0.0.1:${haPort}`, proxy_protocol: 1 },
        { listen: `127.0.0.1:${v2Listen}`, target: `127.0.0.1:${haPort}`, proxy_protocol: 2 },
        { listen: `[::1]:${v6Listen}`, target: `127.0.0.1:${haPort}`, proxy_protocol: 2 },
        { listen: `[::1]:${v6v1Listen}`, target: `127.0.0.1:${haPort}`, proxy_protocol: 1 }
      ]
    }
  })
  const viaMulch = await askFrom(mulchListen, '127.0.0.31')
  t.equal(viaMulch.body, `src=127.0.0.31 sport=${viaMulch.localPort} dst=127.0.0.1 dport=443\n`, 'v1 from the Mulch port file')
  const viaV1 = await askFrom(v1Listen, '127.0.0.32')
  t.equal(viaV1.body, `src=127.0.0.32 sport=${viaV1.localPort} dst=127.0.0.1 dport=${v1Listen}\n`, 'v1 from the route file')
  const viaV2 = await askFrom(v2Listen, '127.0.0.33')
  t.equal(viaV2.body, `src=127.0.0.33 sport=${viaV2.localPort} dst=127.0.0.1 dport=${v2Listen}\n`, 'v2 from the route file')
  const viaV6 = await askFrom(v6Listen, '::1', '::1')
  t.equal(viaV6.body, `src=::1 sport=${viaV6.localPort} dst=::1 dport=${v6Listen}\n`, 'v2 with IPv6 addresses')
  const viaV6v1 = await askFrom(v6v1Listen, '::1', '::1')
  t.equal(viaV6v1.body, `src=::1 sport=${viaV6v1.localPort} dst=::1 dport=${v6v1Listen}\n`, 'v1 with IPv6 addresses (TCP6)')
})
