/**
 * The old side of a takeover stops accepting BEFORE it answers "draining": once the new
 * process reads that answer it says it serves (`--detach` returns, an operator or a
 * health check connects), so a connection made from then on must reach the new process,
 * never the old one on its way out (where the admin listener's connections are closed at
 * the end of the drain: a reset /status was seen under load). The old side here holds
 * its event loop for a while in its drain: the answer must come after that.
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { requestTakeover } from '../../proxy/takeover.ts'
import { NODE, ROOT, tempDir } from '../helpers/proxy-process.ts'

const HOLD_MS = 400

t.test('the answer "draining" comes after the old side stopped accepting', async (t) => {
  const dir = tempDir(t)
  const pidFile = join(dir, 'proxy.pid')
  const old = spawn(NODE, [join(ROOT, 'test/helpers/takeover-old-side.ts'), pidFile, String(HOLD_MS)], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { old.kill('SIGKILL') })
  let out = ''
  old.stdout.setEncoding('utf8')
  await new Promise<void>((resolve, reject) => {
    old.stdout.on('data', (s: string) => { out += s; if (out.includes('ready')) resolve() })
    old.once('exit', () => { reject(new Error(`the old side exited: ${out}`)) })
  })
  const taken = await requestTakeover(pidFile)
  t.ok(taken.handles.has('http'), 'the socket was handed over')
  const asked = Date.now()
  await taken.drain()
  const waited = Date.now() - asked
  t.ok(waited >= HOLD_MS - 50, `"draining" arrived ${waited} ms after it was asked, after the old side's drain began (it holds ${HOLD_MS} ms there)`)
  for (const h of taken.handles.values()) h.close()
})
