// PROXY protocol v1 and v2 headers read by a real nginx (Debian package nginx-light,
// SPEC §11 and issue 11): nginx listens with `proxy_protocol` on loopback and answers
// each request with the addresses it read from the header ($proxy_protocol_*).
import t from 'tap'
import { spawn, spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import net from 'node:net'
import { tempDir } from '../helpers/proxy-process.ts'
import { pollUntil } from '../helpers/pebble.ts'
import { connectFrom, freePort, mulchPort, readToEnd, startTcpProxy } from '../helpers/tcp-forward.ts'

const NGINX = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => spawnSync(p, ['-v']).status === 0)

/** Starts nginx in the foreground (no master, no user switch): `proxy_protocol` on `port`. */
async function startNginx (t: { teardown (fn: () => unknown): void }, port: number): Promise<void> {
  const dir = tempDir(t, 'vmfront-nginx-')
  const cfg = join(dir, 'nginx.conf')
  writeFileSync(cfg, `daemon off;
master_process off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  server {
    listen 127.0.0.1:${port} proxy_protocol;
    location / {
      default_type text/plain;
      return 200 "src=$proxy_protocol_addr sport=$proxy_protocol_port dst=$proxy_protocol_server_addr dport=$proxy_protocol_server_port\\n";
    }
  }
}
`)
  const child = spawn(NGINX!, ['-c', cfg, '-p', dir], { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (c: Buffer) => { output += c.toString() })
  child.stderr.on('data', (c: Buffer) => { output += c.toString() })
  t.teardown(() => { child.kill('SIGKILL') })
  await pollUntil(() => new Promise<boolean>((resolve) => {
    if (child.exitCode !== null) throw new Error(`nginx exited: ${output}`)
    const s = net.connect(port, '127.0.0.1')
    s.once('connect', () => { s.destroy(); resolve(true) })
    s.once('error', () => { resolve(false) })
  }), 5000, `nginx listening on ${port}`)
}

async function askFrom (port: number, source: string): Promise<{ body: string, localPort: number }> {
  const s = await connectFrom(port, source, '127.0.0.1')
  const localPort = s.localPort!
  s.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  const r = await readToEnd(s)
  const text = r.data.toString()
  return { body: text.slice(text.indexOf('\r\n\r\n') + 4), localPort }
}

t.test('PROXY v1 (Mulch PROXYProtoPort, route file) and v2 (route file) are read by a real nginx', async (t) => {
  // Not skipped when missing: a skip would count as passing.
  if (NGINX === undefined) throw new Error('nginx is not installed (apt-get install nginx-light; .ci/run installs it)')
  const ngPort = await freePort()
  await startNginx(t, ngPort)
  const [mulchListen, v1Listen, v2Listen] = [await freePort(), await freePort(), await freePort()]
  await startTcpProxy(t, mulchPort(mulchListen, { '*': [443, ngPort] }), {
    routes: {
      version: 1,
      routes: [],
      ports: [
        { listen: `127.0.0.1:${v1Listen}`, target: `127.0.0.1:${ngPort}`, proxy_protocol: 1 },
        { listen: `127.0.0.1:${v2Listen}`, target: `127.0.0.1:${ngPort}`, proxy_protocol: 2 }
      ]
    }
  })
  const viaMulch = await askFrom(mulchListen, '127.0.0.41')
  t.equal(viaMulch.body, `src=127.0.0.41 sport=${viaMulch.localPort} dst=127.0.0.1 dport=443\n`, 'v1 from the Mulch port file')
  const viaV1 = await askFrom(v1Listen, '127.0.0.42')
  t.equal(viaV1.body, `src=127.0.0.42 sport=${viaV1.localPort} dst=127.0.0.1 dport=${v1Listen}\n`, 'v1 from the route file')
  const viaV2 = await askFrom(v2Listen, '127.0.0.43')
  t.equal(viaV2.body, `src=127.0.0.43 sport=${viaV2.localPort} dst=127.0.0.1 dport=${v2Listen}\n`, 'v2 from the route file')
})
