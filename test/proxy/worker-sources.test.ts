/**
 * proxy/worker-sources.ts: what the primary strips for its workers, and the node flags a
 * worker starts with. (That a worker really runs without the stripper: worker-loads.test.ts.)
 */
import t from 'tap'
import { readFileSync } from 'node:fs'
import { stripTypeScriptTypes } from 'node:module'
import { WORKER_MAIN_URL, WORKER_SEMI_SPACE_MIB, collectWorkerSources, workerExecArgv } from '../../proxy/worker-sources.ts'

t.test('the sources reachable from worker-main.ts, stripped as Node strips them', async (t) => {
  const sources = collectWorkerSources()
  const base = new URL('../../proxy/', import.meta.url).href
  for (const file of ['worker-main.ts', 'main.ts', 'forward.ts', 'server.ts', 'handler.ts']) t.ok(sources.has(base + file), `${file} is among them`)
  t.ok(sources.has(new URL('../../certs/index.ts', import.meta.url).href), 'certs/ too, through certs/index.ts')
  t.notOk([...sources.keys()].some((u) => u.includes('/node_modules/') || !u.endsWith('.ts')), 'only the project\'s .ts files')
  const main = sources.get(WORKER_MAIN_URL) ?? ''
  t.equal(main, stripTypeScriptTypes(readFileSync(new URL(WORKER_MAIN_URL), 'utf8')), 'the same text Node would run')
  t.notMatch(main, /import type|: ProxyConfig/, 'no types left')
})

t.test('a file that cannot be read is left to Node', async (t) => {
  const missing = new URL('./no-such-module.ts', import.meta.url).href
  t.same([...collectWorkerSources(missing).keys()], [], 'nothing collected, nothing thrown')
})

t.test('a worker gets a smaller young generation unless the operator chose one', async (t) => {
  t.same(workerExecArgv([], ''), [`--max-semi-space-size=${WORKER_SEMI_SPACE_MIB}`])
  t.same(workerExecArgv(['--enable-source-maps'], ''), [`--max-semi-space-size=${WORKER_SEMI_SPACE_MIB}`, '--enable-source-maps'], 'the primary\'s own flags kept, after ours')
  t.same(workerExecArgv(['--max-semi-space-size=32'], ''), ['--max-semi-space-size=32'], 'node\'s own flag wins')
  t.same(workerExecArgv([], '--max-semi-space-size=16 --no-warnings'), [], 'NODE_OPTIONS wins')
})
