/**
 * The structure review's rule: no module of proxy/, certs/ or daemon-adapter/ imports,
 * even for types only, a module that imports it back (directly or around a circle).
 * Shared shapes live in modules of their own (proxy/http-types.ts, proxy/chain/types.ts,
 * certs/types.ts) instead. A circle is reported with its modules.
 */
import t from 'tap'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { ROOT } from '../helpers/proxy-process.ts'

const IMPORT = /^(?:import|export)\s+(?:type\s+)?(?:[^'"]*?\s+from\s+)?'(\.{1,2}\/[^']+)'/gm

function sources (dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) sources(path, out)
    else if (name.endsWith('.ts')) out.push(path)
  }
  return out
}

/** Strongly connected components of more than one module (Tarjan). */
function circles (edges: Map<string, string[]>): string[][] {
  let next = 0
  const index = new Map<string, number>()
  const low = new Map<string, number>()
  const stack: string[] = []
  const onStack = new Set<string>()
  const found: string[][] = []
  const visit = (v: string): void => {
    index.set(v, next)
    low.set(v, next)
    next++
    stack.push(v)
    onStack.add(v)
    for (const w of edges.get(v) ?? []) {
      if (!edges.has(w)) continue
      if (!index.has(w)) {
        visit(w)
        low.set(v, Math.min(low.get(v)!, low.get(w)!))
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!))
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = []
      let w: string
      do {
        w = stack.pop()!
        onStack.delete(w)
        component.push(w)
      } while (w !== v)
      if (component.length > 1) found.push(component)
    }
  }
  for (const v of edges.keys()) if (!index.has(v)) visit(v)
  return found
}

t.test('no import circles in proxy/, certs/, daemon-adapter/ (type imports included)', async (t) => {
  const files = ['proxy', 'certs', 'daemon-adapter'].flatMap((d) => sources(join(ROOT, d)))
  const edges = new Map<string, string[]>()
  for (const file of files) {
    const text = readFileSync(file, 'utf8')
    edges.set(file, [...text.matchAll(IMPORT)].map((m) => resolve(dirname(file), m[1])))
  }
  t.ok(files.length > 50, `${files.length} modules read`)
  t.ok([...edges.values()].some((e) => e.length > 0), 'imports found')
  t.same(circles(edges).map((c) => c.map((f) => relative(ROOT, f)).sort()), [], 'no circle')
})
