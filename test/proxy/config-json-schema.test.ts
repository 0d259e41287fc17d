// SPEC §13: a JSON Schema of the proxy TOML for editors. proxy/config.schema.json
// is generated from the checker's own specs and cannot drift: the committed file
// equals the generator's output, every key the checker knows is in it and every key
// in it is one the checker knows, and the shipped example configs validate.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse as parseToml } from 'smol-toml'
import { CONFIG_SPEC, checkConfig } from '../../proxy/config.ts'
import { RATE_PROFILE_KEYS } from '../../proxy/rate-profile.ts'
import { configJsonSchema } from '../../proxy/config-json-schema.ts'
import { ROOT } from '../helpers/proxy-process.ts'

type Schema = { type?: string, properties?: Record<string, Schema>, additionalProperties?: boolean, items?: Schema, enum?: unknown[], pattern?: string, minimum?: number, maximum?: number, required?: string[], default?: unknown }

const committed = JSON.parse(readFileSync(join(ROOT, 'proxy/config.schema.json'), 'utf8')) as Schema

/** The draft-07 subset the schema uses; returns "path: problem" strings. */
function validate (value: unknown, schema: Schema, path = '$'): string[] {
  const out: string[] = []
  const typeOf = (v: unknown): string => Array.isArray(v) ? 'array' : typeof v === 'bigint' ? 'integer' : typeof v === 'number' ? (Number.isInteger(v) ? 'integer' : 'number') : v === null ? 'null' : typeof v
  const actual = typeOf(value)
  if (schema.type !== undefined && actual !== schema.type && !(schema.type === 'number' && actual === 'integer')) return [`${path}: ${actual}, expected ${schema.type}`]
  if (schema.enum !== undefined && !schema.enum.includes(value)) out.push(`${path}: not one of ${JSON.stringify(schema.enum)}`)
  if (schema.pattern !== undefined && typeof value === 'string' && !new RegExp(schema.pattern).test(value)) out.push(`${path}: "${value}" does not match ${schema.pattern}`)
  if (typeof value === 'number' && schema.minimum !== undefined && value < schema.minimum) out.push(`${path}: under ${schema.minimum}`)
  if (typeof value === 'number' && schema.maximum !== undefined && value > schema.maximum) out.push(`${path}: over ${schema.maximum}`)
  if (actual === 'array' && schema.items !== undefined) (value as unknown[]).forEach((v, i) => out.push(...validate(v, schema.items!, `${path}[${i}]`)))
  if (actual === 'object') {
    const obj = value as Record<string, unknown>
    for (const r of schema.required ?? []) if (!(r in obj)) out.push(`${path}: ${r} is required`)
    for (const [k, v] of Object.entries(obj)) {
      const sub = schema.properties?.[k]
      if (sub === undefined) { if (schema.additionalProperties === false) out.push(`${path}.${k}: unknown key`) } else out.push(...validate(v, sub, `${path}.${k}`))
    }
  }
  return out
}

t.test('the committed schema is the generator\'s output', async (t) => {
  t.same(committed, configJsonSchema(), 'run: node proxy/config-json-schema.ts > proxy/config.schema.json')
})

t.test('every key the checker knows is in the schema, and nothing else', async (t) => {
  const props = committed.properties!
  const expectedTop = [...Object.keys(CONFIG_SPEC.top), ...Object.keys(CONFIG_SPEC.sections), 'rate_profile'].sort()
  t.same(Object.keys(props).sort(), expectedTop, 'top-level keys and sections')
  for (const [section, spec] of Object.entries(CONFIG_SPEC.sections)) {
    t.same(Object.keys(props[section].properties!).sort(), Object.keys(spec).sort(), `[${section}]`)
    t.equal(props[section].additionalProperties, false, `[${section}] rejects unknown keys`)
  }
  t.same(Object.keys(props.rate_profile.items!.properties!).sort(), [...RATE_PROFILE_KEYS].sort(), '[[rate_profile]]')
  t.equal(committed.additionalProperties, false)
})

t.test('the defaults in the schema are accepted by the checker, and the examples validate', async (t) => {
  const doc: Record<string, unknown> = {}
  for (const [k, s] of Object.entries(committed.properties!)) {
    if (s.type !== 'object') { if (s.default !== undefined) doc[k] = s.default; continue }
    doc[k] = Object.fromEntries(Object.entries(s.properties!).map(([key, sub]) => [key, sub.default]))
  }
  t.same(validate(doc, committed), [], 'the defaults validate against the schema')
  t.doesNotThrow(() => checkConfig(doc, 'defaults.toml'), 'and the checker accepts them')

  for (const name of ['proxy.toml', 'parent.toml', 'child.toml']) {
    const parsed = parseToml(readFileSync(join(ROOT, 'examples', name), 'utf8'))
    t.same(validate(parsed, committed), [], `examples/${name} validates`)
  }
  t.match(readFileSync(join(ROOT, 'examples/proxy.toml'), 'utf8'), /^#:schema \.\.\/proxy\/config\.schema\.json\n/, 'examples/proxy.toml names the schema for Taplo')
})

t.test('the schema flags what the checker refuses', async (t) => {
  const bad = parseToml('data_dri = "/x"\n[listen]\nhttp = "80"\n[log]\nlevel = "loud"\n[timeouts]\nconnect = "5"\n[[rate_profile]]\nconcurrent_max_requests = -1\n') as Record<string, unknown>
  t.same(validate(bad, committed).sort(), [
    '$.data_dri: unknown key',
    '$.listen.http: "80" does not match ^$|^(?:\\[[0-9a-fA-F:.]+\\]|[A-Za-z0-9.-]*):\\d{1,5}$',
    '$.log.level: not one of ["debug","info","warn","error"]',
    '$.rate_profile[0]: name is required',
    '$.rate_profile[0].concurrent_max_requests: under 0',
    '$.timeouts.connect: "5" does not match ^(\\d+(?:\\.\\d+)?(?:ms|s|m|h|d))+$'
  ].sort())
  t.throws(() => checkConfig(bad, 'bad.toml'), { code: 'CONFIG_INVALID' }, 'the checker refuses the same file')
})
