/**
 * @module proxy/json-positions
 * Where a JSON path (`$.routes[1].domain`, `$["a.test"].Name`, as route-table.ts
 * writes them) is in a JSON text: one linear scan with a path stack, recording
 * the line of the paths asked for (and their ancestors). Meant for text that
 * JSON.parse accepted; on other text it finds fewer paths, never throws.
 */

interface Frame {
  readonly path: string
  readonly array: boolean
  /** Arrays: the next element's index. Objects: the pending member's key. */
  index: number
  key: string | undefined
}

/** The path of `key` under `at`, spelled the way route-table.ts spells it. */
function childPath (at: string, key: string | number): string {
  if (typeof key === 'number') return `${at}[${key}]`
  return /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key) && key.length <= 80 ? `${at}.${key}` : `${at}[${JSON.stringify(key)}]`
}

const SEGMENT = /\.[A-Za-z_$][A-Za-z0-9_$]*|\[(?:\d+|"(?:[^"\\]|\\.)*")\]/gy

/** `$.a[1].b` → `$.a[1].b`, `$.a[1]`, `$.a`, `$` (a path it cannot read: itself only). */
function lineage (path: string): string[] {
  if (!path.startsWith('$')) return [path]
  const ends: number[] = [1]
  SEGMENT.lastIndex = 1
  while (SEGMENT.lastIndex < path.length) {
    if (SEGMENT.exec(path) === null) return [path]
    ends.push(SEGMENT.lastIndex)
  }
  return ends.reverse().map((end) => path.slice(0, end))
}

/**
 * The 1-based lines of `paths` in `text`: a path that is not written (a missing
 * key) gets the line of its nearest written ancestor; undefined when none is.
 */
export function jsonPathLines (text: string, paths: Iterable<string>): Map<string, number> {
  const wanted = [...paths]
  const look = new Set(wanted.flatMap(lineage))
  const found = new Map<string, number>()
  const stack: Frame[] = []
  let line = 1
  let rootSeen = false
  /** A value starts here: the path it has, if any. */
  const valueStarts = (): string | undefined => {
    const top = stack[stack.length - 1]
    if (top === undefined) {
      if (rootSeen) return undefined
      rootSeen = true
      return '$'
    }
    if (top.array) return childPath(top.path, top.index)
    return top.key === undefined ? undefined : childPath(top.path, top.key)
  }
  const note = (path: string | undefined): void => {
    if (path !== undefined && look.has(path) && !found.has(path)) found.set(path, line)
  }
  for (let i = 0; i < text.length; i++) {
    const c = text[i]
    if (c === '\n') { line++; continue }
    if (c === ' ' || c === '\t' || c === '\r' || c === ':') continue
    const top = stack[stack.length - 1]
    if (c === ',') {
      if (top?.array === true) top.index++
      else if (top !== undefined) top.key = undefined
      continue
    }
    if (c === '}' || c === ']') { stack.pop(); continue }
    if (c === '"') {
      let end = i + 1
      while (end < text.length && text[end] !== '"') end += text[end] === '\\' ? 2 : 1
      const raw = text.slice(i, end + 1)
      if (top !== undefined && !top.array && top.key === undefined) {
        // A member's key: its line is the member's line.
        try { top.key = JSON.parse(raw) as string } catch { top.key = raw }
        note(childPath(top.path, top.key))
      } else {
        note(valueStarts())
      }
      i = end
      continue
    }
    if (c === '{' || c === '[') {
      const path = valueStarts() ?? ''
      if (top === undefined || top.array) note(path)
      stack.push({ path, array: c === '[', index: 0, key: undefined })
      continue
    }
    // a number, true, false or null: skip to its end
    if (top === undefined || top.array) note(valueStarts())
    while (i + 1 < text.length && /[^\s,\]}]/.test(text[i + 1])) i++
  }
  const out = new Map<string, number>()
  for (const p of wanted) {
    const l = lineage(p).map((q) => found.get(q)).find((n) => n !== undefined)
    if (l !== undefined) out.set(p, l)
  }
  return out
}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y
const STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y
const LITERAL = /true|false|null/y

/**
 * Where `text` stops being JSON (RFC 8259): the line and column (1-based) of the
 * first character a JSON parser cannot accept, or of the end when the text is
 * cut short; undefined when it is valid. One linear pass, no recursion. JSON.parse
 * gives a position for some errors only ("Unexpected token" has none).
 */
export function jsonSyntaxPosition (text: string): { line: number, column: number } | undefined {
  // 'v' a value is expected, 'k' a member key, 'K' a key or '}', 'V' a value or ']',
  // ':' a colon, ',' a comma or the container's end, 'e' nothing more (end of text).
  type Want = 'v' | 'k' | 'K' | 'V' | ':' | ',' | 'e'
  let want: Want = 'v'
  const stack: Array<'{' | '['> = []
  let i = 0
  const match = (re: RegExp): boolean => {
    re.lastIndex = i
    if (!re.test(text)) return false
    i = re.lastIndex
    return true
  }
  const afterValue = (): Want => stack.length === 0 ? 'e' : ','
  while (true) {
    while (i < text.length && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++
    if (i >= text.length) return want === 'e' ? undefined : positionOf(text, i)
    const c = text[i]
    if (want === 'e') return positionOf(text, i)
    if (want === ':') {
      if (c !== ':') return positionOf(text, i)
      i++
      want = 'v'
      continue
    }
    if (want === ',') {
      const top = stack[stack.length - 1]
      if (c === ',') { i++; want = top === '{' ? 'k' : 'v'; continue }
      if ((c === '}' && top === '{') || (c === ']' && top === '[')) { i++; stack.pop(); want = afterValue(); continue }
      return positionOf(text, i)
    }
    if (want === 'k' || want === 'K') {
      if (c === '}' && want === 'K') { i++; stack.pop(); want = afterValue(); continue }
      if (c !== '"' || !match(STRING)) return positionOf(text, i)
      want = ':'
      continue
    }
    // a value ('v'), or for 'V' a value or the end of an empty array
    if (c === ']' && want === 'V') { i++; stack.pop(); want = afterValue(); continue }
    if (c === '{') { i++; stack.push('{'); want = 'K'; continue }
    if (c === '[') { i++; stack.push('['); want = 'V'; continue }
    if (c === '"' ? match(STRING) : (match(NUMBER) || match(LITERAL))) { want = afterValue(); continue }
    return positionOf(text, i)
  }
}

function positionOf (text: string, offset: number): { line: number, column: number } {
  let line = 1
  let start = 0
  for (let at = text.indexOf('\n'); at !== -1 && at < offset; at = text.indexOf('\n', at + 1)) {
    line++
    start = at + 1
  }
  return { line, column: offset - start + 1 }
}
