/**
 * Route-file fuzzing (issue 9): seeded mutations of valid v1 and Mulch files, and
 * of their text, each written to disk and reloaded by a real reloader. Checked
 * for every file: nothing throws, a refused file leaves the served table exactly
 * as it was (same router object) and an accepted one serves exactly the parsed
 * table, every problem has a JSON path and a short message without `undefined`,
 * and the log lines of a reload are few and bounded.
 *
 * `npm test` runs a few hundred files (route-file-fuzz.test.ts); the torture
 * runner calls `fuzzRouteFiles(10_000, seed)`.
 */
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createLogger, MAX_LINE_CHARS } from '../../proxy/log.ts'
import { createMetrics } from '../../proxy/metrics.ts'
import { createServedRoutes } from '../../proxy/served-routes.ts'
import { createRouteReloader, LOGGED_PROBLEMS } from '../../proxy/reload.ts'
import { isEmptyLegacyTable, parseRouteFileText, type RouteProblem } from '../../proxy/route-table.ts'

export interface FuzzReport {
  files: number
  accepted: number
  refused: number
  /** Problems reported in all (errors and warnings). */
  problems: number
  longestProblem: number
  longestLogLine: number
  mostLogLines: number
  ms: number
  /** What went wrong, the first 50 (empty when everything held). */
  violations: string[]
}

/** mulberry32: small, fast, and the same sequence for the same seed. */
function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const TRICKY_DOMAINS = ['a.test.', 'a..test', 'A.test', 'xn--.test', 'xn--caf-dma.test', 'café.test', '-a.test', 'a-.test', `${'a'.repeat(64)}.test`,
  `${'a.'.repeat(127)}test`, 'a_b.test', '*.test', 'localhost', '1.2.3.4', '::1', '', ' ', 'a.123', 'a.test\u0000', '.', 'a.test..']
const TRICKY_TARGETS = ['http://10.0.0.1:0', 'http://10.0.0.1:00', 'http://10.0.0.1:65535', 'http://10.0.0.1:65536', 'http://10.0.0.1:-1', 'http://[::1]:80',
  'http://[::1]', 'http://user@h:80', 'http://h:80/path', 'HTTP://H:80', 'https://h:443', 'http://h:', 'http://:80', 'http://1.2.3.4:08080', 'h:80',
  'http://a_b:80', 'http://h:80?q', 'http://h:80#f', 'http://%41:80', 'http://h :80', '']
const TRICKY_KEYS = ['$schema', '__proto__', 'constructor', 'toString', '', ' ', 'Domain', 'TargetURL', 'Chained', 'version', 'routes', 'x'.repeat(300)]

export function fuzzRouteFiles (count: number, seed: number): Promise<FuzzReport> {
  return runFuzz(count, seed)
}

async function runFuzz (count: number, seed: number): Promise<FuzzReport> {
  const random = prng(seed)
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]
  const int = (n: number): number => Math.floor(random() * n)

  function randomValue (depth = 0): unknown {
    switch (int(depth > 2 ? 9 : 11)) {
      case 0: return null
      case 1: return random() < 0.5
      case 2: return pick([0, -1, 1, 80, 65535, 65536, 1.5, 1e308, -0, 301, 302, 303, 308])
      case 3: return pick(TRICKY_DOMAINS)
      case 4: return pick(TRICKY_TARGETS)
      case 5: return 'x'.repeat(pick([1, 100, 5000, 200_000]))
      case 6: return '\u202e\ud800\uffff' + String.fromCharCode(int(0x3000))
      case 7: return `vm${int(1000)}.test`
      case 8: return ''
      case 9: return Array.from({ length: int(4) }, () => randomValue(depth + 1))
      default: return Object.fromEntries(Array.from({ length: int(4) }, () => [pick(TRICKY_KEYS), randomValue(depth + 1)]))
    }
  }

  function validV1 (): Record<string, unknown> {
    const routes = Array.from({ length: 1 + int(5) }, (_, i) => {
      const domain = `r${i}-${int(1000)}.test`
      return random() < 0.7
        ? { domain, target: `http://10.0.${int(256)}.${int(256)}:${1 + int(65535)}`, vm: `vm${i}`, ...(random() < 0.3 ? { redirect_to_https: true } : {}) }
        : { domain, redirect_to: 'app.test', redirect_code: pick([301, 302, 307, 308]) }
    })
    return { version: 1, routes }
  }

  function validLegacy (): Record<string, unknown> {
    const doc: Record<string, unknown> = {}
    for (let i = 0; i < 1 + int(5); i++) {
      const name = `m${i}-${int(1000)}.test`
      doc[name] = random() < 0.7
        ? { Name: name, VMName: `vm${i}`, RedirectTo: '', RedirectCode: 0, DestinationHost: `10.1.${int(256)}.${int(256)}`, DestinationPort: 1 + int(65535), RedirectToHTTPS: random() < 0.3, RateProfile: '' }
        : { Name: name, VMName: 'r', RedirectTo: 'app.test', RedirectCode: pick([0, 301, 302]), DestinationHost: '', DestinationPort: 0, RedirectToHTTPS: false, RateProfile: '' }
    }
    return doc
  }

  /** Mutates a random object inside `doc` (in place). */
  function mutateDoc (doc: Record<string, unknown>): void {
    const objects: Array<Record<string, unknown>> = [doc]
    const walk = (v: unknown): void => {
      if (Array.isArray(v)) v.forEach(walk)
      else if (typeof v === 'object' && v !== null) {
        objects.push(v as Record<string, unknown>)
        Object.values(v).forEach(walk)
      }
    }
    Object.values(doc).forEach(walk)
    const target = pick(objects)
    const keys = Object.keys(target)
    switch (int(6)) {
      case 0: if (keys.length > 0) delete target[pick(keys)]; break
      case 1: if (keys.length > 0) target[pick(keys)] = randomValue(); break
      case 2: target[pick(TRICKY_KEYS)] = randomValue(); break
      case 3: { // a duplicate, maybe written with a trailing dot
        const routes = doc.routes
        if (Array.isArray(routes) && routes.length > 0) {
          const copy = { ...(routes[0] as Record<string, unknown>) }
          if (typeof copy.domain === 'string' && random() < 0.5) copy.domain += '.'
          routes.push(copy)
        } else if (keys.length > 0) {
          const key = pick(Object.keys(doc))
          doc[`${key}.`] = doc[key]
        }
        break
      }
      case 4: if ('target' in target || 'domain' in target) target.target = pick(TRICKY_TARGETS); else target.DestinationPort = randomValue(); break
      default: if ('domain' in target) target.domain = pick(TRICKY_DOMAINS); else target.Name = pick(TRICKY_DOMAINS)
    }
  }

  function mutateText (text: string): string {
    switch (int(12)) {
      case 0: return text.slice(0, int(text.length))
      case 1: { const i = int(text.length); return text.slice(0, i) + String.fromCharCode(int(128)) + text.slice(i + 1) }
      case 2: return '\ufeff' + text
      case 3: return pick(['{}', '{}\n', '', ' \n', 'null', '[]', '0', '"routes"', '{"version":1,"routes":[]}', '{"version":1}', '{"routes":[]}'])
      case 4: return text + pick([' x', '}', ',', '\u0000'])
      case 5: return '['.repeat(5000) + ']'.repeat(5000)
      case 6: return `{"version":1,"routes":[${Array.from({ length: 200 }, () => '{}').join(',')}]}`
      default: return text
    }
  }

  const dir = mkdtempSync(join(tmpdir(), 'vmfront-route-fuzz-'))
  const file = join(dir, 'routes.json')
  const lines: string[] = []
  const logger = createLogger({ level: 'debug', sink: { write: (line) => { lines.push(line) }, flush: () => {} } })
  const metrics = createMetrics()
  const served = createServedRoutes({ logger, metrics })
  const holder = served.holder
  const reloader = createRouteReloader({ file, served, logger, metrics, hasProfile: (name) => name === 'default' })
  const report: FuzzReport = { files: 0, accepted: 0, refused: 0, problems: 0, longestProblem: 0, longestLogLine: 0, mostLogLines: 0, ms: 0, violations: [] }
  const violation = (i: number, what: string): void => {
    if (report.violations.length < 50) report.violations.push(`file ${i} (seed ${seed}): ${what}`)
  }
  const checkProblems = (i: number, problems: readonly RouteProblem[]): void => {
    for (const p of problems) {
      const length = p.path.length + p.message.length
      report.longestProblem = Math.max(report.longestProblem, length)
      if (!p.path.startsWith('$')) violation(i, `a problem without a JSON path: ${JSON.stringify(p).slice(0, 200)}`)
      if (p.message.trim() === '') violation(i, `an empty message at ${p.path.slice(0, 100)}`)
      if (/undefined|\[object Object\]|\n\s+at /.test(p.path + ' ' + p.message)) violation(i, `a message showing undefined, an object or a stack: ${JSON.stringify(p).slice(0, 300)}`)
      if (length > 2000) violation(i, `a problem ${length} characters long at ${p.path.slice(0, 100)}`)
    }
  }

  const write = (text: string): void => {
    writeFileSync(`${file}.tmp`, text)
    renameSync(`${file}.tmp`, file)
  }
  const started = performance.now()
  try {
    write(JSON.stringify({ version: 1, routes: [{ domain: 'seed.test', target: 'http://10.0.0.1:80' }] }))
    await reloader.reload('fuzz-start')
    for (let i = 0; i < count; i++) {
      const doc = random() < 0.5 ? validV1() : validLegacy()
      for (let m = int(4); m > 0; m--) mutateDoc(doc)
      const text = random() < 0.35 ? mutateText(JSON.stringify(doc)) : JSON.stringify(doc)
      write(text)
      const beforeRouter = holder.router
      const beforeTable = reloader.table()
      lines.length = 0
      let parsed: ReturnType<typeof parseRouteFileText>
      try {
        parsed = parseRouteFileText(text)
      } catch (err) {
        violation(i, `the parser threw: ${(err as Error).message}`)
        continue
      }
      let status
      try {
        status = await reloader.reload('fuzz')
      } catch (err) {
        violation(i, `the reload threw: ${(err as Error).message}`)
        continue
      }
      report.files++
      report.problems += status.errorCount + status.warningCount
      checkProblems(i, status.errors)
      checkProblems(i, status.warnings)
      checkProblems(i, parsed.ok ? parsed.warnings : [...parsed.errors, ...parsed.warnings])
      if (status.result === 'failure') {
        report.refused++
        if (holder.router !== beforeRouter || reloader.table() !== beforeTable) violation(i, 'a refused file changed the served table')
        if (parsed.ok && !isEmptyLegacyTable(parsed.table)) violation(i, 'a file the parser accepts was refused')
        if (status.errors.length === 0 || status.errorCount < status.errors.length) violation(i, 'a refusal without its problems')
      } else {
        report.accepted++
        const table = reloader.table()
        if (!parsed.ok && table !== beforeTable) violation(i, 'a file the parser refuses was loaded')
        if (holder.router.size !== table.routes.length || table.routes.some((r) => holder.router.entries.get(r.domain)?.route !== r)) {
          violation(i, 'the router does not serve exactly the loaded table')
        }
        if (parsed.ok && table !== beforeTable && JSON.stringify(table) !== JSON.stringify(parsed.table)) violation(i, 'the loaded table differs from the parsed one')
      }
      report.mostLogLines = Math.max(report.mostLogLines, lines.length)
      if (lines.length > 2 * LOGGED_PROBLEMS + 4) violation(i, `${lines.length} log lines for one reload`)
      for (const line of lines) {
        report.longestLogLine = Math.max(report.longestLogLine, line.length)
        if (line.length > MAX_LINE_CHARS) violation(i, `a log line of ${line.length} characters`)
        try { JSON.parse(line) } catch { violation(i, `a log line that is not JSON: ${line.slice(0, 200)}`) }
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  report.ms = Math.round(performance.now() - started)
  return report
}
