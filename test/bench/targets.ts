/**
 * @module test/bench/targets
 * The backend and every benchmarked target: how to start it on a free loopback port,
 * pinned to core 1, and how to tell when it serves the backend's "ok".
 */
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs'
import { delimiter, join } from 'node:path'
import { BENCH_DOMAIN, caddyfile, haproxyConf, nginxBackendConf, nginxProxyConf, routesJson, vmfrontToml } from './configs.ts'
import type { ChainRole } from './configs.ts'
import { freePort, httpGet, startProcess, waitForOk } from './proc.ts'
import type { Proc } from './proc.ts'

/** The core every target is pinned to (wrk gets core 0). */
const TARGET_CORE = 1

export interface BenchContext {
  /** Temp dir holding one sub-dir per server. */
  root: string
  /** Repository root (vmfront's proxy/cli.ts lives there). */
  repo: string
  /** The Node 24 binary running this harness. */
  node: string
  backendPort: number
}

/** A target that answers: where wrk points, and what to stop afterwards. */
export interface Running {
  url: string
  /** Host header to send, for targets that route by it. */
  host?: string
  procs: Proc[]
  /** Run after the warm-up; returns a one-line observation for the report. */
  check?: () => Promise<string>
}

export interface TargetDef {
  name: string
  /** Reported as skipped, not failed, when missing or not coming up. */
  optional?: 'when-missing' | 'always'
  /** Why this target cannot run on this machine (a missing binary), if so. */
  missing?: (ctx: BenchContext) => string | undefined
  start: (ctx: BenchContext) => Promise<Running>
}

/** Finds an executable on PATH or in the sbin dirs (Debian puts nginx/haproxy there). */
export function findBin (name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/sbin', '/usr/local/sbin']
  return dirs.filter((dir) => dir.startsWith('/')).map((dir) => join(dir, name)).find((file) => existsSync(file))
}

function dirFor (ctx: BenchContext, name: string): string {
  const dir = join(ctx.root, name)
  mkdirSync(dir, { recursive: true })
  return dir
}

/** Starts the processes, then waits for "ok" through `url`; stops them all on failure. */
async function serve (procs: Proc[], url: string, host: string | undefined, timeoutMs: number): Promise<Running> {
  try {
    await waitForOk(url, host, procs, timeoutMs)
  } catch (err) {
    await Promise.all(procs.map((proc) => proc.stop()))
    throw err
  }
  return { url, host, procs }
}

/** The backend: nginx when installed, else a Node http server. Not pinned. */
export async function startBackend (root: string, node: string, repo: string): Promise<{ kind: string, port: number, proc: Proc }> {
  const port = await freePort()
  const dir = join(root, 'backend')
  mkdirSync(dir, { recursive: true })
  const nginx = findBin('nginx')
  let proc: Proc
  let kind: string
  if (nginx !== undefined) {
    writeFileSync(join(dir, 'nginx.conf'), nginxBackendConf(dir, port))
    proc = startProcess({ cmd: nginx, args: ['-p', dir, '-e', join(dir, 'error.log'), '-c', join(dir, 'nginx.conf')], logFile: join(dir, 'out.log') })
    kind = 'nginx'
  } else {
    proc = startProcess({ cmd: node, args: [join(repo, 'test/bench/node-server.ts'), '--port', String(port)], logFile: join(dir, 'out.log') })
    kind = 'node http (nginx not installed)'
  }
  await serve([proc], `http://127.0.0.1:${port}/`, undefined, 10_000)
  return { kind, port, proc }
}

/** A Node script of this folder taking `--port` and `--target`. */
function nodeScript (name: string, file: string, withTarget: boolean): TargetDef {
  return {
    name,
    async start (ctx) {
      const port = await freePort()
      const args = [join(ctx.repo, 'test/bench', file), '--port', String(port)]
      if (withTarget) args.push('--target', `http://127.0.0.1:${ctx.backendPort}`)
      const proc = startProcess({ cmd: ctx.node, args, core: TARGET_CORE, logFile: join(dirFor(ctx, name), 'out.log') })
      return serve([proc], `http://127.0.0.1:${port}/`, undefined, 10_000)
    }
  }
}

function installed (bin: string): (ctx: BenchContext) => string | undefined {
  return () => findBin(bin) === undefined ? `${bin} not installed` : undefined
}

const nginxProxy: TargetDef = {
  name: 'nginx',
  optional: 'when-missing',
  missing: installed('nginx'),
  async start (ctx) {
    const port = await freePort()
    const dir = dirFor(ctx, 'nginx')
    writeFileSync(join(dir, 'nginx.conf'), nginxProxyConf(dir, port, ctx.backendPort))
    const args = ['-p', dir, '-e', join(dir, 'error.log'), '-c', join(dir, 'nginx.conf')]
    const proc = startProcess({ cmd: findBin('nginx')!, args, core: TARGET_CORE, logFile: join(dir, 'out.log') })
    return serve([proc], `http://127.0.0.1:${port}/`, undefined, 10_000)
  }
}

const haproxy: TargetDef = {
  name: 'haproxy',
  optional: 'when-missing',
  missing: installed('haproxy'),
  async start (ctx) {
    const port = await freePort()
    const dir = dirFor(ctx, 'haproxy')
    writeFileSync(join(dir, 'haproxy.cfg'), haproxyConf(port, ctx.backendPort))
    const proc = startProcess({ cmd: findBin('haproxy')!, args: ['-db', '-f', join(dir, 'haproxy.cfg')], core: TARGET_CORE, logFile: join(dir, 'out.log') })
    return serve([proc], `http://127.0.0.1:${port}/`, undefined, 10_000)
  }
}

const caddy: TargetDef = {
  name: 'caddy',
  optional: 'when-missing',
  missing: installed('caddy'),
  async start (ctx) {
    const port = await freePort()
    const dir = dirFor(ctx, 'caddy')
    writeFileSync(join(dir, 'Caddyfile'), caddyfile(port, ctx.backendPort))
    // Caddy keeps its state under HOME / XDG dirs: point them into the temp dir.
    // GOMAXPROCS=1: one core, as vmfront with one worker (the pinning alone would also give 1).
    const env = { ...process.env, HOME: dir, XDG_DATA_HOME: join(dir, 'data'), XDG_CONFIG_HOME: join(dir, 'config'), GOMAXPROCS: '1' }
    const args = ['run', '--config', join(dir, 'Caddyfile'), '--adapter', 'caddyfile']
    const proc = startProcess({ cmd: findBin('caddy')!, args, env, core: TARGET_CORE, logFile: join(dir, 'out.log') })
    return serve([proc], `http://127.0.0.1:${port}/`, undefined, 10_000)
  }
}

interface VmfrontProc { proc: Proc, http: number, admin: number, logFile: string }

/** Writes a config and route file into `dir` and starts `vmfront proxy` on them. */
async function startVmfront (ctx: BenchContext, dir: string, backendPort: number | undefined, chain: ChainRole, http?: number): Promise<VmfrontProc> {
  const ports = { http: http ?? await freePort(), admin: await freePort() }
  writeFileSync(join(dir, 'vmfront.toml'), vmfrontToml(dir, ports, chain))
  writeFileSync(join(dir, 'routes.json'), routesJson(backendPort))
  const logFile = join(dir, 'vmfront.log')
  const args = [join(ctx.repo, 'proxy/cli.ts'), 'proxy', '--config', join(dir, 'vmfront.toml')]
  const proc = startProcess({ cmd: ctx.node, args, cwd: ctx.repo, core: TARGET_CORE, logFile })
  return { proc, ...ports, logFile }
}

function noCli (ctx: BenchContext): string | undefined {
  return existsSync(join(ctx.repo, 'proxy/cli.ts')) ? undefined : 'proxy/cli.ts does not exist yet'
}

/** Reads vmfront's request counter for the bench domain and the log size (access log on?). */
async function observe (vm: VmfrontProc): Promise<string> {
  let counted = 'no /metrics'
  try {
    const { status, body } = await httpGet(`http://127.0.0.1:${vm.admin}/metrics`, undefined)
    const lines = body.split('\n').filter((line) => line.startsWith('vmfront_http_requests_total{') && line.includes(`"${BENCH_DOMAIN}"`))
    const total = lines.reduce((sum, line) => sum + Number(line.split(' ').at(-1)), 0)
    counted = status === 200 ? `/metrics counts ${total} requests for ${BENCH_DOMAIN}` : `/metrics answered ${status}`
  } catch (err) {
    counted = `/metrics failed: ${(err as Error).message}`
  }
  const mb = statSync(vm.logFile).size / 1e6
  return `${counted}; stdout log ${mb.toFixed(1)} MB after warm-up (access log ${mb > 0.1 ? 'on' : 'off?'})`
}

const vmfront: TargetDef = {
  name: 'vmfront',
  missing: noCli,
  async start (ctx) {
    const vm = await startVmfront(ctx, dirFor(ctx, 'vmfront'), ctx.backendPort, { mode: 'none' })
    const running = await serve([vm.proc], `http://127.0.0.1:${vm.http}/`, BENCH_DOMAIN, 15_000)
    return { ...running, check: () => observe(vm) }
  }
}

/** Issue 4: client → parent vmfront → (HTTP/2) child vmfront → backend. */
const vmfrontChain: TargetDef = {
  name: 'vmfront-chain',
  optional: 'always',
  missing: noCli,
  async start (ctx) {
    const apiPort = await freePort()
    const childPort = await freePort()
    const parent = await startVmfront(ctx, dirFor(ctx, 'chain-parent'), undefined, { mode: 'parent', apiPort })
    const child = await startVmfront(ctx, dirFor(ctx, 'chain-child'), ctx.backendPort, { mode: 'child', apiPort, childPort }, childPort)
    // The child registers with the parent after both are up; give that a few seconds.
    const running = await serve([parent.proc, child.proc], `http://127.0.0.1:${parent.http}/`, BENCH_DOMAIN, 10_000)
    return { ...running, check: async () => `parent: ${await observe(parent)}` }
  }
}

/** Every target, in report order. `vmfront-chain` is skipped if it does not come up. */
export const TARGETS: TargetDef[] = [
  vmfront,
  vmfrontChain,
  nodeScript('minimal-undici', 'minimal-undici.ts', true),
  nodeScript('minimal-http-proxy-3', 'minimal-http-proxy-3.ts', true),
  nginxProxy,
  haproxy,
  caddy,
  nodeScript('bare-node', 'node-server.ts', false)
]
