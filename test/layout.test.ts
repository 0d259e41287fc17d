// SPEC §1: the top-level layout and the one-way import directions between packages.
import t from 'tap'
import { readdirSync, readFileSync, statSync, existsSync } from 'node:fs'
import { join, relative, resolve, dirname } from 'node:path'
import { ROOT } from './helpers/proxy-process.ts'

function sources (dir: string): string[] {
  const out: string[] = []
  for (const name of readdirSync(dir)) {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) out.push(...sources(path))
    else if (/\.(ts|js|mjs)$/.test(name)) out.push(path)
  }
  return out
}

/** Every module specifier a file imports (static, dynamic, re-exports). */
function importsOf (file: string): string[] {
  const text = readFileSync(file, 'utf8')
  const specs: string[] = []
  for (const m of text.matchAll(/(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|import\s+['"]([^'"]+)['"]|new URL\(\s*['"]([^'"]+\.ts)['"]/g)) {
    specs.push(m[1] ?? m[2] ?? m[3] ?? m[4])
  }
  return specs
}

function target (file: string, spec: string): string | undefined {
  if (!spec.startsWith('.')) return undefined
  return relative(ROOT, resolve(dirname(file), spec))
}

t.test('top-level layout', async (t) => {
  for (const entry of ['package.json', 'package-lock.json', 'tsconfig.json', 'README.md', 'Dockerfile', '.ci/run', 'proxy', 'certs', 'daemon-adapter', 'test', 'examples']) {
    t.ok(existsSync(join(ROOT, entry)), `${entry} exists`)
  }
  const allowedDirs = new Set(['proxy', 'certs', 'daemon-adapter', 'test', 'examples', '.ci', '.git', 'node_modules', '.tap'])
  for (const name of readdirSync(ROOT)) {
    if (statSync(join(ROOT, name)).isDirectory()) t.ok(allowedDirs.has(name), `top-level folder ${name} is allowed`)
  }
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string>, engines: { node: string } }
  t.ok(pkg.bin.vmfront, 'a vmfront bin')
  t.equal(pkg.engines.node, '>=22')
})

t.test('import directions', async (t) => {
  const certs = sources(join(ROOT, 'certs'))
  const adapter = existsSync(join(ROOT, 'daemon-adapter')) ? sources(join(ROOT, 'daemon-adapter')) : []
  const proxy = sources(join(ROOT, 'proxy'))
  t.ok(certs.length > 0 && proxy.length > 0, 'sources found')
  for (const file of certs) {
    for (const spec of importsOf(file)) {
      const to = target(file, spec)
      if (to !== undefined) t.ok(to.startsWith('certs/'), `${relative(ROOT, file)} imports ${spec}: certs/ stays a library`)
      else t.ok(spec.startsWith('node:') || spec === 'acme-client' || spec === 'node-forge' || spec.startsWith('node-forge/'), `${relative(ROOT, file)} imports ${spec}: certs/ uses only node:, acme-client, node-forge`)
    }
  }
  for (const file of adapter) {
    for (const spec of importsOf(file)) {
      const to = target(file, spec)
      if (to === undefined) continue
      t.ok(to.startsWith('daemon-adapter/') || to === 'proxy/route-table.ts', `${relative(ROOT, file)} imports ${spec}: only proxy/route-table.ts from proxy/`)
      t.notOk(to.startsWith('certs/'), `${relative(ROOT, file)} does not import certs/`)
    }
  }
  for (const file of proxy) {
    for (const spec of importsOf(file)) {
      const to = target(file, spec)
      if (to === undefined) continue
      if (to.startsWith('certs/')) t.equal(to, 'certs/index.ts', `${relative(ROOT, file)} imports certs only through certs/index.ts`)
      if (to.startsWith('daemon-adapter/')) t.equal(relative(ROOT, file), 'proxy/cli.ts', 'only the CLI dispatcher names the daemon (loaded lazily by path)')
    }
  }
  // What daemon-adapter loads through route-table.ts (its port parser included)
  // depends on node: built-ins only.
  const closure = new Set<string>()
  const visit = (file: string): void => {
    if (closure.has(file)) return
    closure.add(file)
    for (const spec of importsOf(join(ROOT, file))) if (!spec.startsWith('node:')) visit(target(join(ROOT, file), spec) ?? spec)
  }
  visit('proxy/route-table.ts')
  t.same([...closure].filter((f) => !['proxy/route-table.ts', 'proxy/port-table.ts', 'proxy/ip-match.ts'].includes(f)), [], 'proxy/route-table.ts depends on node: built-ins only (with port-table.ts and ip-match.ts, which do too)')
})
