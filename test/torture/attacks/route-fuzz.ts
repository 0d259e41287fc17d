/**
 * @module test/torture/attacks/route-fuzz
 * 10,000 mutated route files (route-mutator.ts) through the parser in process, and a
 * few hundred of them through the running proxy with SIGHUP. Checks: the parser never
 * throws, the proxy never dies, an invalid file leaves the served table exactly as it
 * was (admin /status), a valid one is served whole, and no message carries
 * `undefined`, a stack fragment, or an echo of a huge input.
 */
import { writeFileAtomic } from '../../../certs/file-storage.ts'
import { parseRouteFileText } from '../../../proxy/route-table.ts'
import { baseDocuments, createRng, mutate, type Mutant } from '../route-mutator.ts'
import type { AttackContext, TortureAttack } from '../types.ts'

/** A single message longer than this echoes its input instead of summarising it. */
const MAX_MESSAGE = 4096
const BAD_TEXT: Array<[RegExp, string]> = [[/undefined/, '"undefined"'], [/ {4}at /, 'a stack fragment']]

/** Collects distinct findings, a few examples each, with the seed-replayable index. */
function findings (): { add (kind: string, example: string): void, list (): string[] } {
  const byKind = new Map<string, { count: number, examples: string[] }>()
  return {
    add (kind, example) {
      const entry = byKind.get(kind) ?? { count: 0, examples: [] }
      entry.count++
      if (entry.examples.length < 2) entry.examples.push(example.length > 300 ? example.slice(0, 300) + '…' : example)
      byKind.set(kind, entry)
    },
    list: () => [...byKind].map(([kind, e]) => `${kind}: ${e.count} time(s), e.g. ${e.examples.join(' / ')}`)
  }
}

function checkText (text: string, where: string, found: ReturnType<typeof findings>): void {
  for (const [re, what] of BAD_TEXT) if (re.test(text)) found.add(`${where} contains ${what}`, text)
  if (text.length > MAX_MESSAGE) found.add(`${where} longer than ${MAX_MESSAGE} characters (echoes its input)`, `${text.length} characters: ${text.slice(0, 120)}`)
}

function describe (m: Mutant, i: number): string {
  return `#${i} [${m.kinds.join(' ')}]`
}

async function inProcess (ctx: AttackContext, count: number, found: ReturnType<typeof findings>): Promise<Record<string, number | string>> {
  const rng = createRng(ctx.seed)
  // A fixed VM address (nothing is served here), so the same seed gives the same bytes on every run.
  const bases = baseDocuments(ctx.stand.host, ctx.stand.limitedHost, '127.0.0.1', 8080)
  let valid = 0
  let slowest = 0
  let slowestKinds = ''
  const started = performance.now()
  for (let i = 0; i < count; i++) {
    const mutant = mutate(rng, bases)
    // The proxy reads the file as UTF-8 text: decode the same way.
    const text = mutant.bytes.toString('utf8')
    const t0 = performance.now()
    try {
      const result = parseRouteFileText(text)
      if (result.ok) valid++
      for (const p of [...(result.ok ? [] : result.errors), ...result.warnings]) {
        checkText(`${p.path}: ${p.message}`, 'a parser message', found)
      }
    } catch (err) {
      found.add('the parser threw', `${describe(mutant, i)} ${(err as Error).name}: ${(err as Error).message}`)
    }
    const took = performance.now() - t0
    if (took > slowest) { slowest = took; slowestKinds = describe(mutant, i) }
    // Let the stand's IPC and timers breathe.
    if (i % 200 === 199) await new Promise((resolve) => setImmediate(resolve))
  }
  return {
    'files parsed in process': count,
    'valid among them': valid,
    'parse time': `${Math.round(performance.now() - started)} ms`,
    'slowest parse': `${Math.round(slowest)} ms ${slowestKinds}`
  }
}

interface StatusRoutes { routes?: unknown[], reload?: { routes?: number } }

async function viaSighup (ctx: AttackContext, count: number, found: ReturnType<typeof findings>): Promise<Record<string, number | string>> {
  const { proxy } = ctx.stand
  // Another seed than the in-process run: other files. They route to the stand's VM, whose
  // port changes from run to run, so byte-level mutations differ between runs.
  const rng = createRng(ctx.seed ^ 0x5eed)
  const vm = new URL(ctx.stand.vm.origin)
  const bases = baseDocuments(ctx.stand.host, ctx.stand.limitedHost, vm.hostname, Number(vm.port))
  const served = async (): Promise<string> => JSON.stringify(((await ctx.stand.status()) as StatusRoutes).routes)
  const counts = { reloads: 0, refused: 0, loaded: 0, unchanged: 0, maxLines: 0, tableChanged: 0 }
  let table = await served()
  for (let i = 0; i < count; i++) {
    if (proxy.child.exitCode !== null || proxy.child.signalCode !== null) {
      found.add('the proxy died during SIGHUP reloads', `after file #${i - 1}: ${String(proxy.child.exitCode ?? proxy.child.signalCode)}; stderr ${proxy.stderr().slice(-300)}`)
      break
    }
    const mutant = mutate(rng, bases)
    let expected: ReturnType<typeof parseRouteFileText> | undefined
    try {
      expected = parseRouteFileText(mutant.bytes.toString('utf8'))
    } catch (err) {
      // Already a finding of the in-process run; the proxy must still refuse the file.
      found.add('the parser threw', `SIGHUP ${describe(mutant, i)} ${(err as Error).name}: ${(err as Error).message}`)
    }
    await writeFileAtomic(proxy.routesFile, mutant.bytes, 0o644)
    const from = proxy.logs.length
    let outcome: Record<string, unknown>
    try {
      outcome = await proxy.reload()
    } catch (err) {
      found.add('a SIGHUP reload gave no outcome', `${describe(mutant, i)}: ${(err as Error).message.slice(0, 200)}`)
      continue
    }
    counts.reloads++
    const lines = proxy.logs.slice(from)
    counts.maxLines = Math.max(counts.maxLines, lines.length)
    for (const line of lines) checkText(JSON.stringify(line), 'a log line', found)
    const now = await served()
    if (outcome.msg === 'route file unchanged') {
      counts.unchanged++
    } else if (expected?.ok === true) {
      counts.loaded++
      if (outcome.msg !== 'routes loaded') found.add('a valid file was refused by the proxy', `${describe(mutant, i)}: ${String(outcome.msg)}`)
      const n = ((await ctx.stand.status()) as StatusRoutes).routes?.length
      if (n !== expected.table.routes.length) found.add('a valid file was not served whole', `${describe(mutant, i)}: ${expected.table.routes.length} routes in the file, ${String(n)} served`)
      table = now
    } else {
      counts.refused++
      if (outcome.msg !== 'route reload failed: still serving the previous table') found.add('an invalid file was not refused', `${describe(mutant, i)}: ${String(outcome.msg)}`)
      if (now !== table) { counts.tableChanged++; found.add('an invalid file changed the served table', describe(mutant, i)); table = now }
    }
  }
  checkText(proxy.stderr(), 'the proxy\'s stderr', found)
  // Back to the stand's own table, so the settle and the normal client see the usual VM.
  await writeFileAtomic(proxy.routesFile, Buffer.from(JSON.stringify(ctx.stand.baseRoutes)), 0o644)
  await proxy.reload()
  return {
    'files via SIGHUP': counts.reloads,
    'refused': counts.refused,
    'loaded': counts.loaded,
    'unchanged': counts.unchanged,
    'most log lines for one reload': counts.maxLines,
    'tables changed by an invalid file': counts.tableChanged
  }
}

export const routeFuzz: TortureAttack = {
  name: 'route-fuzz',
  summary: '10,000 mutated route files (v1 and Mulch format) through the parser in process, then 300 through the proxy with SIGHUP',
  // A valid mutant may drop, redirect or re-target the normal client's route.
  normalAccepts: [301, 302, 307, 308, 404, 502],
  async run (ctx) {
    const found = findings()
    const inProc = await inProcess(ctx, ctx.quick ? 1000 : 10_000, found)
    ctx.say(`  in process: ${JSON.stringify(inProc)}`)
    const sighup = await viaSighup(ctx, ctx.quick ? 30 : 300, found).catch((err: Error) => {
      found.add('the SIGHUP run stopped early', err.message)
      return {}
    })
    return {
      stats: { ...inProc, ...sighup, seed: ctx.seed },
      problems: found.list(),
      notes: ['the normal client accepts 3xx, 404 and 502 here: a valid mutant may redirect, drop or re-target its route']
    }
  }
}
