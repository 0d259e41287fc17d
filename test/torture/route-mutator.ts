/**
 * @module test/torture/route-mutator
 * A seeded mutator of route files: starts from a valid v1 or Mulch-format file and
 * applies structural mutations (type swaps, deleted and unknown keys, huge strings,
 * deep nesting, out-of-range numbers, hostile domains and targets, duplicates) and
 * byte-level ones (bit flips, truncation, BOMs, NUL and non-UTF-8 bytes, duplicate
 * keys, trailing commas). Same seed, same files.
 */

/** mulberry32: small, fast, and good enough to spread mutations around. */
export interface Rng {
  next (): number
  int (n: number): number
  pick<T> (items: readonly T[]): T
  chance (p: number): boolean
}

export function createRng (seed: number): Rng {
  let a = seed >>> 0
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  return {
    next,
    int: (n) => Math.floor(next() * n),
    pick: (items) => items[Math.floor(next() * items.length)],
    chance: (p) => next() < p
  }
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json }

export interface Bases { v1: Json, legacy: Json }

/** A valid file of each format routing `host` (and a few more) to `vmHost:vmPort`. */
export function baseDocuments (host: string, limitedHost: string, vmHost: string, vmPort: number): Bases {
  const target = `http://${vmHost}:${vmPort}`
  return {
    v1: {
      version: 1,
      routes: [
        { domain: host, target, vm: 'torture' },
        { domain: limitedHost, target, vm: 'torture', rate_profile: 'flood' },
        { domain: `www.${host}`, redirect_to: host, redirect_code: 301 },
        { domain: `secure.${host}`, target, redirect_to_https: true },
        { domain: `xn--bcher-kva.${host}`, target }
      ]
    },
    legacy: {
      [host]: { Name: host, VMName: 'torture', RedirectTo: '', RedirectCode: 0, DestinationHost: vmHost, DestinationPort: vmPort, RedirectToHTTPS: false, RateProfile: '' },
      [limitedHost]: { Name: limitedHost, VMName: 'torture', RedirectTo: '', RedirectCode: 0, DestinationHost: vmHost, DestinationPort: vmPort, RedirectToHTTPS: false, RateProfile: 'flood' },
      [`www.${host}`]: { Name: `www.${host}`, VMName: '', RedirectTo: host, RedirectCode: 301, DestinationHost: '', DestinationPort: 0, RedirectToHTTPS: false, RateProfile: '' }
    }
  }
}

// Values JSON.stringify cannot write (deep nesting, numbers out of double range) go in as
// placeholders and are expanded in the text.
const DEEP = '\u0000DEEP:'
const NUM = '\u0000NUM:'
const PLACEHOLDER = /"\\u0000(DEEP|NUM):([^"]*)"/g

const ODD_NUMBERS = ['0', '-1', '-0', '1.0', '1.5', '2', '65535', '65536', '99999999999', '1e400', '-1e400', '1e-400', '9007199254740993', '3e2', '0x50', '08']
const ODD_DOMAINS = [
  'TORTURE.TEST', 'torture.test.', '.torture.test', 'bücher.test', '10.0.0.1', '::1', '', 'a'.repeat(64) + '.test',
  ('a'.repeat(62) + '.').repeat(4) + 'test', '*.test', 'a..b', 'xn--.test', 'xn--zz-.test', '-a.test', 'a_b.test', ' torture.test',
  'torture.test\u0000', '\u202etset.erutrot', 'localhost', '1.2.3.4.5', 'test.123', 'a/b.test', 'a.test:80', 'torture.test'
]
const ODD_TARGETS = [
  'https://127.0.0.1:1', 'http://127.0.0.1:0', 'http://127.0.0.1', 'http://u:p@127.0.0.1:1', 'http://127.0.0.1:1/p', 'ftp://127.0.0.1', '',
  'http://[::1]:80', 'http://[::1', 'http://127.0.0.1:1?q', 'http://127.0.0.1:1#f', 'http://%00:1', `http://${'a'.repeat(300)}:1`,
  'http://127.0.0.1:65536', 'http://127.0.0.1:-1', 'http:127.0.0.1:80', '//127.0.0.1:80', 'HTTP://127.0.0.1:80', 'http://127.0.0.1:80 '
]
const ODD_VALUES: Json[] = [null, true, false, 0, -1, 1.5, 1e308, '', 'x', [], {}, [1, 2], { a: 1 }, 'http://127.0.0.1:1', '\u0000', ' ', '__proto__']
const ODD_KEYS = ['__proto__', 'constructor', 'prototype', 'Domain', 'DOMAIN', 'target ', '', 'toString', 'hasOwnProperty', '\u0000', 'x'.repeat(1000)]
const WHOLE_DOCS = [
  '{}', '[]', 'null', '"routes"', '1', 'true', '{"version":1}', '{"routes":[]}', '{"version":1,"routes":{}}', '{"version":1,"routes":[null]}',
  '{"version":1,"routes":[]}', '{"version":1,"routes":[],"extra":1}', '{"a.test":{}}', '{"a.test":{"Name":"a.test"}}', '{"version":"1","routes":[]}',
  '{"version":2,"routes":[]}', '{"version":1,"routes":[{}]}', '{"__proto__":{"version":1},"routes":[]}', ''
]

interface Slot { parent: Json[] | { [key: string]: Json }, key: string | number, value: Json }

function slots (doc: Json, out: Slot[] = [], depth = 0): Slot[] {
  if (depth > 6 || doc === null || typeof doc !== 'object') return out
  if (Array.isArray(doc)) doc.forEach((value, key) => { out.push({ parent: doc, key, value }); slots(value, out, depth + 1) })
  else for (const [key, value] of Object.entries(doc)) { out.push({ parent: doc, key, value }); slots(value, out, depth + 1) }
  return out
}

function set (slot: Slot, value: Json): void {
  (slot.parent as Record<string | number, Json>)[slot.key] = value
}

function randomString (rng: Rng, length: number): string {
  const chars = 'abcdefghijklmnopqrstuvwxyz0123456789.-_/:@ \t"\\\u00e9\u4e2d\ud83d\ude00\u0000'
  let s = ''
  for (let i = 0; i < length; i++) s += chars[rng.int(chars.length)]
  return s
}

type TreeMutation = (doc: Json, rng: Rng) => Json

const TREE: Record<string, TreeMutation> = {
  'type-swap' (doc, rng) {
    const all = slots(doc)
    if (all.length > 0) set(rng.pick(all), structuredClone(rng.pick(ODD_VALUES)))
    return doc
  },
  'delete-key' (doc, rng) {
    const all = slots(doc)
    if (all.length === 0) return doc
    const slot = rng.pick(all)
    if (Array.isArray(slot.parent)) slot.parent.splice(slot.key as number, 1)
    else delete slot.parent[slot.key]
    return doc
  },
  'unknown-key' (doc, rng) {
    const objects = [doc, ...slots(doc).map((s) => s.value)].filter((v): v is { [key: string]: Json } => v !== null && typeof v === 'object' && !Array.isArray(v))
    if (objects.length > 0) rng.pick(objects)[rng.pick(ODD_KEYS)] = structuredClone(rng.pick(ODD_VALUES))
    return doc
  },
  'huge-string' (doc, rng) {
    const all = slots(doc)
    if (all.length === 0) return doc
    const length = 10 ** (3 + rng.int(4))
    set(rng.pick(all), rng.chance(0.5) ? 'a'.repeat(length) : randomString(rng, Math.min(length, 100_000)))
    return doc
  },
  'deep-nesting' (doc, rng) {
    const all = slots(doc)
    const depth = rng.pick([10, 100, 1000, 10_000, 100_000])
    const nested = `${DEEP}${rng.chance(0.5) ? 'a' : 'o'}${depth}`
    if (all.length === 0 || rng.chance(0.1)) return nested
    set(rng.pick(all), nested)
    return doc
  },
  'number-range' (doc, rng) {
    const numeric = slots(doc).filter((s) => typeof s.value === 'number' || /code|port|version/i.test(String(s.key)))
    const all = numeric.length > 0 ? numeric : slots(doc)
    if (all.length > 0) set(rng.pick(all), `${NUM}${rng.pick(ODD_NUMBERS)}`)
    return doc
  },
  'domain' (doc, rng) {
    const named = slots(doc).filter((s) => s.key === 'domain' || s.key === 'Name' || s.key === 'redirect_to' || s.key === 'RedirectTo')
    if (named.length > 0) set(rng.pick(named), rng.pick(ODD_DOMAINS))
    else if (doc !== null && typeof doc === 'object' && !Array.isArray(doc)) {
      // Mulch format: the domain is the key.
      const keys = Object.keys(doc)
      if (keys.length > 0) {
        const key = rng.pick(keys)
        const value = doc[key]
        delete doc[key]
        doc[rng.pick(ODD_DOMAINS)] = value
      }
    }
    return doc
  },
  'target' (doc, rng) {
    const targets = slots(doc).filter((s) => s.key === 'target' || s.key === 'DestinationHost')
    if (targets.length > 0) set(rng.pick(targets), rng.pick(ODD_TARGETS))
    return doc
  },
  'duplicate-route' (doc, rng) {
    const lists = [doc, ...slots(doc).map((s) => s.value)].filter((v): v is Json[] => Array.isArray(v) && v.length > 0)
    if (lists.length > 0) {
      const list = rng.pick(lists)
      const copy = structuredClone(rng.pick(list))
      if (copy !== null && typeof copy === 'object' && !Array.isArray(copy) && typeof copy.domain === 'string' && rng.chance(0.5)) {
        // The same domain with a trailing dot, or upper-cased: the same host to the router.
        copy.domain = rng.chance(0.5) ? `${copy.domain}.` : copy.domain.toUpperCase()
      }
      list.push(copy)
    }
    return doc
  },
  'many-routes' (doc, rng) {
    const routes = doc !== null && typeof doc === 'object' && !Array.isArray(doc) ? doc.routes : undefined
    if (Array.isArray(routes)) {
      const n = rng.pick([100, 1000, 10_000])
      for (let i = 0; i < n; i++) routes.push({ domain: `r${i}.many.test`, target: rng.chance(0.9) ? 'http://127.0.0.1:9' : rng.pick(ODD_TARGETS) })
    }
    return doc
  }
}

type ByteMutation = (bytes: Buffer, rng: Rng) => Buffer

function insert (bytes: Buffer, at: number, what: Buffer | string): Buffer {
  return Buffer.concat([bytes.subarray(0, at), Buffer.isBuffer(what) ? what : Buffer.from(what), bytes.subarray(at)])
}

const BYTES: Record<string, ByteMutation> = {
  'bit-flip' (bytes, rng) {
    const out = Buffer.from(bytes)
    const flips = 1 + rng.int(8)
    for (let i = 0; i < flips && out.length > 0; i++) out[rng.int(out.length)] ^= 1 << rng.int(8)
    return out
  },
  'truncate': (bytes, rng) => bytes.subarray(0, rng.int(bytes.length)),
  'bom': (bytes, rng) => Buffer.concat([Buffer.from(rng.pick([[0xef, 0xbb, 0xbf], [0xff, 0xfe], [0xfe, 0xff], [0xef, 0xbb, 0xbf, 0xef, 0xbb, 0xbf]])), bytes]),
  'nul': (bytes, rng) => insert(bytes, rng.int(bytes.length + 1), Buffer.from([0])),
  'non-utf8': (bytes, rng) => insert(bytes, rng.int(bytes.length + 1), Buffer.from(rng.pick([[0xff], [0xc3, 0x28], [0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xc0, 0xaf], [0xfe, 0xfe, 0xff]]))),
  'duplicate-key' (bytes, rng) {
    const text = bytes.toString('latin1')
    const braces = [...text.matchAll(/\{/g)].map((m) => m.index)
    if (braces.length === 0) return bytes
    return insert(bytes, rng.pick(braces) + 1, rng.pick(['"domain":"dup.test",', '"version":2,', '"routes":[],', '"Name":"dup.test",', '"target":"http://127.0.0.1:1",', '"redirect_code":301,']))
  },
  'trailing-comma' (bytes, rng) {
    const text = bytes.toString('latin1')
    const closers = [...text.matchAll(/[}\]]/g)].map((m) => m.index)
    return closers.length === 0 ? bytes : insert(bytes, rng.pick(closers), ',')
  },
  'junk': (bytes, rng) => insert(bytes, rng.int(bytes.length + 1), rng.pick(['/* x */', '// x\n', '\u2028', '\r', 'NaN', 'Infinity', '\'', '\\', '\\u', '"\\ud800"', '1e', '-'])),
  'delete-byte' (bytes, rng) {
    if (bytes.length === 0) return bytes
    const at = rng.int(bytes.length)
    return Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + 1 + rng.int(4))])
  }
}

export interface Mutant {
  bytes: Buffer
  /** The mutations applied, in order ("v1", "huge-string", "bit-flip"...). */
  kinds: string[]
}

function expand (text: string): string {
  return text.replace(PLACEHOLDER, (_m, kind: string, arg: string) => {
    if (kind === 'NUM') return arg
    const depth = Number(arg.slice(1))
    return arg[0] === 'a' ? '['.repeat(depth) + ']'.repeat(depth) : '{"a":'.repeat(depth) + '1' + '}'.repeat(depth)
  })
}

/** One mutant: a base file, 0-3 tree mutations, 0-2 byte mutations (at least one of either). */
export function mutate (rng: Rng, bases: Bases): Mutant {
  if (rng.chance(0.03)) {
    const whole = rng.pick(WHOLE_DOCS)
    return { bytes: Buffer.from(whole), kinds: ['whole-document'] }
  }
  const format = rng.chance(0.7) ? 'v1' : 'legacy'
  const kinds: string[] = [format]
  let doc = structuredClone(bases[format])
  const treeNames = Object.keys(TREE)
  const byteNames = Object.keys(BYTES)
  const trees = rng.chance(0.8) ? 1 + rng.int(3) : 0
  for (let i = 0; i < trees; i++) {
    const name = rng.pick(treeNames)
    doc = TREE[name](doc, rng)
    kinds.push(name)
  }
  let bytes: Buffer = Buffer.from(expand(JSON.stringify(doc, null, rng.chance(0.5) ? 2 : undefined)))
  const byteCount = trees === 0 ? 1 + rng.int(2) : rng.chance(0.4) ? 1 + rng.int(2) : 0
  for (let i = 0; i < byteCount; i++) {
    const name = rng.pick(byteNames)
    bytes = BYTES[name](bytes, rng)
    kinds.push(name)
  }
  return { bytes, kinds }
}
