// certs/ is a library: it imports only node: built-ins, acme-client, node-forge and itself.
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'

const dir = join(import.meta.dirname, '../../certs')
const ALLOWED = /^(node:|acme-client$|node-forge$|\.\/[a-z0-9-]+\.ts$)/

t.test('certs/ imports only node:, acme-client, node-forge and its own files', async (t) => {
  const files = readdirSync(dir).filter((f) => f.endsWith('.ts'))
  t.ok(files.includes('index.ts'))
  for (const f of files) {
    const src = readFileSync(join(dir, f), 'utf8')
    const specs = [...src.matchAll(/(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]/g), ...src.matchAll(/import\(\s*['"]([^'"]+)['"]\s*\)/g)].map((m) => m[1])
    for (const s of specs) t.match(s, ALLOWED, `${f} imports ${s}`)
    t.match(src, /^\/\*\*\n \* @module certs/, `${f} starts with an @module header`)
    t.ok(src.split('\n').length < 320, `${f} stays small`)
  }
})
