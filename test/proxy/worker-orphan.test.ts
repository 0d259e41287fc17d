/**
 * A worker never outlives its primary (SPEC §12: one process is what an operator
 * manages), even when the primary dies while the worker is still starting: here the
 * route file is big enough that the workers are still parsing it (in their parse thread)
 * when the primary is killed with SIGKILL. Before, a worker only listened for its primary's going once it
 * had started, and then served its sockets for ever with nobody to supervise it.
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { CLI, NODE, tempDir } from '../helpers/proxy-process.ts'
import { pollUntil } from '../helpers/pebble.ts'

function children (pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter((s) => s !== '').map(Number)
  } catch { return [] }
}

/** Whether the process runs a worker thread: a worker's route parse thread (reload.ts, big files). */
function parsing (pid: number): boolean {
  try {
    return readdirSync(`/proc/${pid}/task`).some((tid) => {
      try { return readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim() === 'WorkerThread' } catch { return false }
    })
  } catch { return false }
}

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch { return false }
}

t.test('workers still starting when their primary is killed leave too', async (t) => {
  const dir = tempDir(t)
  const routes = Array.from({ length: 60_000 }, (_, i) => ({ domain: `d${i}.orphan.test`, target: 'http://127.0.0.1:9' }))
  writeFileSync(join(dir, 'routes.json'), JSON.stringify({ version: 1, routes }))
  writeFileSync(join(dir, 'proxy.toml'), [
    `data_dir = ${JSON.stringify(join(dir, 'data'))}`,
    `routes_file = ${JSON.stringify(join(dir, 'routes.json'))}`,
    `pid_file = ${JSON.stringify(join(dir, 'proxy.pid'))}`,
    '[listen]\nhttp = "127.0.0.1:0"\nhttps = ""\nadmin = "127.0.0.1:0"',
    '[server]\nworkers = 2',
    '[log]\naccess = false'
  ].join('\n') + '\n')
  const primary = spawn(NODE, [CLI, 'proxy', '--config', join(dir, 'proxy.toml')], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  primary.stdout.setEncoding('utf8').on('data', (s: string) => { out += s })
  primary.stderr.resume()
  const pid = primary.pid!
  let workers: number[] = []
  t.teardown(() => { for (const w of [pid, ...workers]) if (alive(w)) process.kill(w, 'SIGKILL') })
  await pollUntil(() => (workers = children(pid)).length >= 2, 30_000, 'the primary forked its workers')
  // Killed while a worker parses the route file: it has asked the primary for what it
  // needs to start (the fallback certificate) and is not serving yet.
  await pollUntil(() => workers.some(parsing), 30_000, 'a worker parsing the route file')
  t.notOk(out.includes('vmfront proxy started'), 'the workers were still starting when the primary was killed')
  process.kill(pid, 'SIGKILL')
  await pollUntil(() => workers.every((w) => !alive(w)), 30_000, `the orphaned workers ${workers.join(', ')} exited`)
  t.pass(`workers ${workers.join(', ')} left after their primary was killed`)
})
