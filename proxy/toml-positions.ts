/**
 * @module proxy/toml-positions
 * Where a dotted key (`chain.mode`, `rate_profile[1].name`) is written in a TOML
 * text. smol-toml gives no positions for keys, so this is a light line scan: table
 * headers, `[[array]]` headers (counted) and `key =` lines. It never judges the
 * text (the parser does); on text it cannot follow it simply finds fewer keys.
 */

/** The 1-based line of each key path and table header found in `text` (first occurrence). */
export function tomlKeyLines (text: string): Map<string, number> {
  const lines = new Map<string, number>()
  scan(text, (path, line) => { if (!lines.has(path)) lines.set(path, line) })
  return lines
}

/** The key or table written on `line` (a repeated one too), as a dotted path; "" when none. */
export function tomlKeyAtLine (text: string, line: number): string {
  let key = ''
  scan(text, (path, at) => { if (at === line && path.length > key.length) key = path })
  return key
}

function scan (text: string, note: (path: string, line: number) => void): void {
  const arrayCounts = new Map<string, number>()
  let prefix = ''
  // Inside a multi-line string ("""…""" or '''…'''), lines are text, not keys.
  let openQuote: string | undefined
  const rows = text.split(/\r?\n/)
  for (const [i, row] of rows.entries()) {
    const line = i + 1
    if (openQuote !== undefined) {
      if (countOf(row, openQuote) % 2 === 1) openQuote = undefined
      continue
    }
    const array = /^\s*\[\[\s*([^\]]+?)\s*\]\]/.exec(row)
    const table = array === null ? /^\s*\[\s*([^\]]+?)\s*\]/.exec(row) : null
    if (array !== null) {
      const name = keyPath(array[1])
      const n = arrayCounts.get(name) ?? 0
      arrayCounts.set(name, n + 1)
      prefix = `${name}[${n}]`
      note(name, line)
      note(prefix, line)
      continue
    }
    if (table !== null) {
      prefix = keyPath(table[1])
      note(prefix, line)
      continue
    }
    const pair = /^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=(.*)$/.exec(row)
    if (pair === null) continue
    note(prefix === '' ? keyPath(pair[1]) : `${prefix}.${keyPath(pair[1])}`, line)
    for (const quote of ['"""', "'''"]) {
      if (countOf(pair[2], quote) % 2 === 1) openQuote = quote
    }
  }
}

/**
 * The line of `path`, or of its nearest written ancestor (a key left out is
 * reported on its table's header); undefined when none is written.
 */
export function lineOfKey (lines: ReadonlyMap<string, number>, path: string): number | undefined {
  let p = path
  for (;;) {
    const line = lines.get(p)
    if (line !== undefined) return line
    const cut = Math.max(p.lastIndexOf('.'), p.lastIndexOf('['))
    if (cut <= 0) return undefined
    p = p.slice(0, cut)
  }
}

/** `a . "b" . 'c'` → `a.b.c` */
function keyPath (raw: string): string {
  const parts = raw.match(/"[^"]*"|'[^']*'|[^.\s]+/g) ?? []
  return parts.map((part) => /^["']/.test(part) ? part.slice(1, -1) : part).join('.')
}

function countOf (text: string, needle: string): number {
  let n = 0
  for (let at = text.indexOf(needle); at !== -1; at = text.indexOf(needle, at + needle.length)) n++
  return n
}
