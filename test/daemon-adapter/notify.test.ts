/**
 * Reload signalling: one SIGHUP per burst to a real process that counts them, and a
 * missing, stale or garbled PID file reported rather than thrown.
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createProxyNotifier, signalProxy } from '../../daemon-adapter/notify.ts'
import type { SignalOutcome } from '../../daemon-adapter/notify.ts'
import { createPublisher } from '../../daemon-adapter/publisher.ts'
import { openRegistry } from '../../daemon-adapter/registry.ts'
import { silentLogger } from '../../daemon-adapter/log.ts'
import { parseVmDefinitionText } from '../../daemon-adapter/vm-definition.ts'
import { NODE, tempDir } from './daemon-process.ts'

const COUNTER = `
let n = 0
process.on('SIGHUP', () => { n++; process.stdout.write('hup ' + n + '\\n') })
process.on('SIGTERM', () => { process.stdout.write('total ' + n + '\\n', () => process.exit(0)) })
process.stdout.write('ready\\n')
setInterval(() => {}, 60000)
`

/**
 * A process that prints "hup N" on each SIGHUP; `next()` resolves with the next line.
 * Its command line is `node DIR/vmfront proxy`, as a vmfront proxy's is: the
 * notifier signals nothing else.
 */
async function startCounter (t: { teardown (fn: () => unknown): void, equal (a: unknown, b: unknown): unknown }, dir: string): Promise<{ pid: number, next: () => Promise<string> }> {
  const script = join(dir, 'vmfront')
  writeFileSync(script, COUNTER)
  const child = spawn(NODE, [script, 'proxy'], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { child.kill('SIGKILL') })
  const lines: string[] = []
  let wake: (() => void) | undefined
  let buffer = ''
  child.stdout.setEncoding('utf8').on('data', (c: string) => {
    buffer += c
    const parts = buffer.split('\n')
    buffer = parts.pop() ?? ''
    lines.push(...parts)
    wake?.()
  })
  const next = async (): Promise<string> => {
    while (lines.length === 0) await new Promise<void>((resolve) => { wake = resolve })
    return lines.shift() as string
  }
  t.equal(await next(), 'ready')
  return { pid: child.pid as number, next }
}

t.test('a burst of requests is one SIGHUP', async (t) => {
  const dir = tempDir(t)
  const counter = await startCounter(t, dir)
  const pidFile = join(dir, 'proxy.pid')
  writeFileSync(pidFile, `${counter.pid}\n`)
  const notifier = createProxyNotifier({ pidFile, debounceMs: 300, log: silentLogger() })

  // Requests spread over the window (not all at once: the kernel itself would merge
  // signals sent back to back, hiding a notifier that does not coalesce).
  const burst: Promise<SignalOutcome>[] = []
  for (let i = 0; i < 8; i++) {
    burst.push(notifier.request())
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  const outcomes = await Promise.all(burst)
  t.ok(outcomes.every((o) => o.status === 'sent' && o.pid === counter.pid), 'every request learns the signal was sent')
  t.equal(await counter.next(), 'hup 1')
  const again = await notifier.request()
  t.equal(again.status, 'sent', 'a later request is a new burst')
  t.equal(await counter.next(), 'hup 2')
  process.kill(counter.pid, 'SIGTERM')
  t.equal(await counter.next(), 'total 2', 'nine requests in two bursts gave exactly two signals')
})

t.test('missing, garbled and stale PID files are reported, not thrown', async (t) => {
  const dir = tempDir(t)
  const pidFile = join(dir, 'proxy.pid')
  t.match(signalProxy(pidFile), { status: 'no-pid-file', message: /does not exist/ })
  writeFileSync(pidFile, 'not a pid\n')
  t.match(signalProxy(pidFile), { status: 'invalid-pid-file', message: /not a pid/ })

  const gone = spawn(NODE, ['-e', ''], { stdio: 'ignore' })
  const pid = gone.pid as number
  await new Promise((resolve) => gone.once('exit', resolve))
  writeFileSync(pidFile, `${pid}\n`)
  t.match(signalProxy(pidFile), { status: 'stale-pid', pid, message: new RegExp(`${pid}.*not running`) })

  const notifier = createProxyNotifier({ pidFile, debounceMs: 10, log: silentLogger() })
  t.match(await notifier.request(), { status: 'stale-pid' })
})

t.test('publisher: writes on change only, signals once per write burst', async (t) => {
  const dir = tempDir(t)
  const counter = await startCounter(t, dir)
  const pidFile = join(dir, 'proxy.pid')
  writeFileSync(pidFile, `${counter.pid}\n`)
  const registry = openRegistry(join(dir, 'r.sqlite'))
  t.teardown(() => { registry.close() })
  const notifier = createProxyNotifier({ pidFile, debounceMs: 50, log: silentLogger() })
  const publisher = createPublisher({ registry, routesFile: join(dir, 'routes.json'), notifier, log: silentLogger() })

  const first = await publisher.publish({ force: true })
  t.match(first, { routes: 0, written: true, signal: { status: 'sent' } })
  t.equal(await counter.next(), 'hup 1')
  t.match(await publisher.publish(), { written: false, signal: { status: 'unchanged' } }, 'same table: no write, no signal')

  const def = parseVmDefinitionText('name = "a"\naddress = "10.0.0.1"\ndomains = ["a.example.com"]', 'a.toml', { driver: 'static', defaultNetwork: 'default' })
  registry.activate(registry.beginRevision(def, { create: true }, () => ({ address: '10.0.0.1', handle: 'a' })).id)
  const changed = await publisher.publish()
  t.match(changed, { routes: 1, written: true, signal: { status: 'sent' } })
  t.equal(await counter.next(), 'hup 2')
})
