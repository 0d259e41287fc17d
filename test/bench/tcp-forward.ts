/**
 * @module test/bench/tcp-forward
 * TCP forwarding throughput (SPEC §11, issue 11's bench row): the same transfer to a
 * sink, direct and through a real `vmfront proxy` process forwarding a port from
 * its port file, interleaved in one run. Prints one JSON object.
 *   ./node_modules/.bin/node test/bench/tcp-forward.ts [--mib 1024] [--rounds 2]
 * Goal: through/direct >= 0.8. On a loaded machine (see load_average) expect noise.
 */
import net from 'node:net'
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const { values } = parseArgs({ options: { mib: { type: 'string', default: '1024' }, rounds: { type: 'string', default: '2' } } })
const BYTES = Number(values.mib) * 1024 * 1024
const ROUNDS = Number(values.rounds)
const ROOT = resolve(fileURLToPath(import.meta.url), '../../..')

async function listen (server: net.Server, port = 0): Promise<number> {
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r))
  return (server.address() as net.AddressInfo).port
}

/** Sends BYTES and waits for the sink's FIN; MiB/s. */
async function send (port: number): Promise<number> {
  const chunk = Buffer.alloc(256 * 1024, 0x61)
  const start = process.hrtime.bigint()
  await new Promise<void>((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => {
      let left = BYTES
      const pump = (): void => {
        while (left > 0) {
          const n = Math.min(left, chunk.length)
          left -= n
          if (!s.write(n === chunk.length ? chunk : chunk.subarray(0, n))) { s.once('drain', pump); return }
        }
        s.end()
      }
      pump()
    })
    s.on('data', () => {})
    s.on('error', reject)
    s.on('close', () => { resolve() })
  })
  return BYTES / 1048576 / (Number(process.hrtime.bigint() - start) / 1e9)
}

const sink = net.createServer((s) => { s.resume(); s.on('end', () => s.end()) })
const sinkPort = await listen(sink)
const probe = net.createServer()
const listenPort = await listen(probe)
await new Promise<void>((r) => probe.close(() => { r() }))

const dir = mkdtempSync(join(tmpdir(), 'vmfront-bench-tcp-'))
const portsFile = join(dir, 'ports.db')
writeFileSync(portsFile, JSON.stringify({ [listenPort]: { ListenAddr: { IP: '127.0.0.1', Port: listenPort, Zone: '' }, Forwards: { '*': { Dest: { IP: '127.0.0.1', Port: sinkPort, Zone: '' }, PROXYProtoPort: 0 } } } }))
writeFileSync(join(dir, 'proxy.toml'), [
  `data_dir = ${JSON.stringify(join(dir, 'data'))}`,
  `routes_file = ${JSON.stringify(join(dir, 'routes.json'))}`,
  `pid_file = ${JSON.stringify(join(dir, 'proxy.pid'))}`,
  `ports_file = ${JSON.stringify(portsFile)}`,
  '[listen]', 'http = "127.0.0.1:0"', 'https = ""', 'admin = ""',
  '[log]', 'access = false', ''
].join('\n'))
const proxy = spawn(process.execPath, [join(ROOT, 'proxy/cli.ts'), 'proxy', '--config', join(dir, 'proxy.toml')], { stdio: ['ignore', 'pipe', 'inherit'] })
try {
  await new Promise<void>((resolve, reject) => {
    let text = ''
    proxy.stdout.on('data', (c: Buffer) => { text += c.toString(); if (text.includes('tcp forward port open')) resolve() })
    proxy.once('exit', (code) => { reject(new Error(`proxy exited ${code}: ${text}`)) })
  })
  const direct: number[] = []
  const through: number[] = []
  for (let i = 0; i < ROUNDS; i++) {
    // alternate the order so neither always runs first
    if (i % 2 === 0) { direct.push(await send(sinkPort)); through.push(await send(listenPort)) } else { through.push(await send(listenPort)); direct.push(await send(sinkPort)) }
  }
  const sum = (a: number[]): number => a.reduce((x, y) => x + y, 0)
  process.stdout.write(JSON.stringify({
    transfer_mib: BYTES / 1048576,
    direct_mib_s: direct.map(Math.round),
    through_vmfront_mib_s: through.map(Math.round),
    ratio: Math.round(sum(through) / sum(direct) * 100) / 100,
    load_average: loadavg()[0]
  }) + '\n')
} finally {
  proxy.kill('SIGKILL')
  sink.close()
  rmSync(dir, { recursive: true, force: true })
}
