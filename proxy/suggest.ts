/**
 * @module proxy/suggest
 * "Did you mean": the known word nearest to a mistyped one, for CLI messages.
 */

/** Edit distance with adjacent transpositions counted as one edit (optimal string alignment). */
function editDistance (a: string, b: string): number {
  let beforePrevious: number[] = []
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      row[j] = Math.min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) row[j] = Math.min(row[j], beforePrevious[j - 2] + 1)
    }
    beforePrevious = previous
    previous = row
  }
  return previous[b.length]
}

/**
 * The known word nearest to `word`, when it is close enough to be a typo: at most
 * 2 edits, and fewer than half of the word's letters.
 */
export function nearestWord (word: string, known: readonly string[]): string | undefined {
  let best: string | undefined
  let bestDistance = Math.min(2, Math.floor((word.length - 1) / 2)) + 1
  for (const candidate of known) {
    const distance = editDistance(word, candidate)
    if (distance < bestDistance) {
      bestDistance = distance
      best = candidate
    }
  }
  return best
}

/**
 * The message for an unknown configuration key: the nearest known key when it looks
 * like a typo ("did you mean"), else the list of known keys.
 */
export function unknownKeyMessage (key: string, known: Iterable<string>): string {
  const keys = [...known]
  const near = nearestWord(key, keys)
  return near === undefined ? `is not a known key (known: ${keys.join(', ')})` : `is not a known key: did you mean "${near}"?`
}
