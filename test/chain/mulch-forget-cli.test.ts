// `vmfront chain forget` (SPEC §10: a Mulch child has no lease, an operator removes it):
// the admin address from --config, the request it sends, exit codes and messages.
import t from 'tap'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { CLI, NODE, tempDir } from '../helpers/proxy-process.ts'

function run (args: string[]): Promise<{ status: number | null, stdout: string, stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(NODE, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (c: string) => { stdout += c })
    child.stderr.setEncoding('utf8').on('data', (c: string) => { stderr += c })
    child.on('close', (status) => { resolve({ status, stdout, stderr }) })
  })
}

t.test('chain forget calls POST /chain/forget on listen.admin of --config', async (t) => {
  const calls: Array<{ method?: string, url?: string, body: string }> = []
  const admin = http.createServer((req, res) => {
    let body = ''
    req.setEncoding('utf8').on('data', (c: string) => { body += c }).on('end', () => {
      calls.push({ method: req.method, url: req.url, body })
      const child = (JSON.parse(body) as { child: string }).child
      if (child === 'http://10.0.0.5:8080') {
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ forgotten: [{ name: child, url: child, domains: ['a.example.com'], protocol: 'mulch' }] }))
      } else {
        res.writeHead(404, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ error: `no chain child named or at "${child}" (see /status chain.children)` }))
      }
    })
  })
  await new Promise<void>((resolve) => admin.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => { admin.closeAllConnections(); admin.close(() => { resolve() }) }))
  const dir = tempDir(t)
  const config = join(dir, 'proxy.toml')
  writeFileSync(config, `[listen]\nadmin = "127.0.0.1:${(admin.address() as AddressInfo).port}"\n`)

  const ok = await run(['chain', 'forget', '--config', config, 'http://10.0.0.5:8080'])
  t.equal(ok.status, 0, ok.stderr)
  t.equal(ok.stdout, 'forgot http://10.0.0.5:8080 (http://10.0.0.5:8080): 1 domain a.example.com\n')
  t.same(calls[0], { method: 'POST', url: '/chain/forget', body: '{"child":"http://10.0.0.5:8080"}' })

  const missing = await run(['chain', 'forget', '--config', config, 'nobody'])
  t.equal(missing.status, 1)
  t.equal(missing.stderr, 'vmfront chain forget: no chain child named or at "nobody" (see /status chain.children)\n')

  const usage = await run(['chain', 'forget'])
  t.equal(usage.status, 2)
  t.match(usage.stderr, /^Usage: vmfront chain forget/)
  const both = await run(['chain', 'forget', '--config', config, '--admin', 'http://127.0.0.1:1', 'x'])
  t.equal(both.status, 2)
  t.match(both.stderr, /give --config or --admin, not both/)
  const help = await run(['chain', '--help'])
  t.equal(help.status, 0)
  t.match(help.stdout, /^Usage: vmfront chain forget/)
})
