/**
 * @module certs/toml-subset
 * A strict parser for the TOML subset extra_certs_file uses: top-level `key = value` lines,
 * `[[array]]` tables, strings ("basic" with escapes and 'literal'), arrays (multi-line, trailing
 * comma), booleans, integers and comments. certs/ may import only node:, acme-client and
 * node-forge, so it cannot use the proxy's TOML library; anything outside the subset is a syntax
 * error with its line, never a silent misread.
 */

export type TomlValue = string | number | boolean | TomlValue[]
export type TomlTable = Record<string, TomlValue>
/** Top-level keys, and for each `[[name]]` the array of its tables. */
export type TomlDocument = Record<string, TomlValue | TomlTable[]>

/** A syntax error at a 1-based line. */
export class TomlSyntaxError extends Error {
  readonly line: number
  constructor (line: number, message: string) {
    super(`line ${line}: ${message}`)
    this.name = 'TomlSyntaxError'
    this.line = line
  }
}

const BARE_KEY = /[A-Za-z0-9_-]/
const ESCAPES: Record<string, string> = { b: '\b', t: '\t', n: '\n', f: '\f', r: '\r', '"': '"', '\\': '\\' }

/** Parses `text`. @throws TomlSyntaxError */
export function parseTomlSubset (text: string): TomlDocument {
  let i = 0
  let line = 1
  const doc: TomlDocument = {}
  let current: TomlTable = doc as TomlTable
  const fail = (message: string): never => { throw new TomlSyntaxError(line, message) }
  const ch = (): string => text[i] ?? ''

  function skipSpaces (): void {
    while (ch() === ' ' || ch() === '\t') i++
  }
  function skipComment (): void {
    if (ch() === '#') while (i < text.length && ch() !== '\n') i++
  }
  function skipBlank (): void {
    for (;;) {
      skipSpaces()
      skipComment()
      if (ch() === '\r' && text[i + 1] === '\n') i++
      if (ch() !== '\n') return
      i++
      line++
    }
  }
  function endOfLine (): void {
    skipSpaces()
    skipComment()
    if (ch() === '\r' && text[i + 1] === '\n') i++
    if (i < text.length && ch() !== '\n') fail(`unexpected ${JSON.stringify(ch())} after value`)
  }
  function bareKey (): string {
    const start = i
    while (BARE_KEY.test(ch())) i++
    if (i === start) fail(`expected a key, found ${JSON.stringify(ch() || 'end of file')}`)
    return text.slice(start, i)
  }
  function basicString (): string {
    if (text.startsWith('"""', i)) fail('multi-line strings are not supported here')
    i++
    let out = ''
    for (;;) {
      const c = ch()
      if (c === '' || c === '\n') fail('unterminated string')
      i++
      if (c === '"') return out
      if (c !== '\\') { out += c; continue }
      const e = ch()
      i++
      if (e in ESCAPES) { out += ESCAPES[e]; continue }
      const len = e === 'u' ? 4 : e === 'U' ? 8 : 0
      const hex = text.slice(i, i + len)
      if (len === 0 || !/^[0-9A-Fa-f]+$/.test(hex) || hex.length !== len) fail(`invalid escape \\${e}`)
      out += String.fromCodePoint(parseInt(hex, 16))
      i += len
    }
  }
  function literalString (): string {
    if (text.startsWith("'''", i)) fail('multi-line strings are not supported here')
    const end = text.indexOf("'", i + 1)
    const nl = text.indexOf('\n', i + 1)
    if (end === -1 || (nl !== -1 && nl < end)) fail('unterminated string')
    const s = text.slice(i + 1, end)
    i = end + 1
    return s
  }
  function array (): TomlValue[] {
    i++
    const out: TomlValue[] = []
    for (;;) {
      skipBlank()
      if (ch() === ']') { i++; return out }
      out.push(value())
      skipBlank()
      if (ch() === ',') { i++; continue }
      if (ch() === ']') { i++; return out }
      fail(`expected , or ] in array, found ${JSON.stringify(ch() || 'end of file')}`)
    }
  }
  function value (): TomlValue {
    const c = ch()
    if (c === '"') return basicString()
    if (c === "'") return literalString()
    if (c === '[') return array()
    const word = /^(true|false|[+-]?\d[\d_]*)(?![A-Za-z0-9_.:-])/.exec(text.slice(i, i + 32))
    if (word === null) return fail(`unsupported value starting with ${JSON.stringify(c || 'end of file')}`)
    i += word[1].length
    if (word[1] === 'true' || word[1] === 'false') return word[1] === 'true'
    return Number(word[1].replace(/_/g, ''))
  }

  for (;;) {
    skipBlank()
    if (i >= text.length) return doc
    if (text.startsWith('[[', i)) {
      i += 2
      skipSpaces()
      const name = bareKey()
      skipSpaces()
      if (!text.startsWith(']]', i)) fail('expected ]] after table name')
      i += 2
      const existing = doc[name]
      if (existing !== undefined && !(Array.isArray(existing) && existing.every((t) => typeof t === 'object' && !Array.isArray(t)))) fail(`${name} is already a value`)
      const table: TomlTable = {}
      if (existing === undefined) doc[name] = [table]
      else (existing as TomlTable[]).push(table)
      current = table
    } else if (ch() === '[') {
      fail('only [[array]] tables are supported here')
    } else {
      const key = bareKey()
      skipSpaces()
      if (ch() !== '=') fail(`expected = after ${key}`)
      i++
      skipSpaces()
      if (Object.hasOwn(current, key)) fail(`duplicate key ${key}`)
      current[key] = value()
    }
    endOfLine()
  }
}
