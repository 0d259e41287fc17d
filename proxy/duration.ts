/**
 * @module proxy/duration
 * Duration strings of the config files: "250ms", "10s", "5m", "2h", "30d", and
 * combinations such as "1m30s". Plain numbers are refused: a unit is always written.
 */

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }
const DURATION = /^(\d+(?:\.\d+)?(?:ms|s|m|h|d))+$/
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/g

/** Parses a duration string into milliseconds; undefined when it is not one. */
export function parseDuration (text: string): number | undefined {
  if (!DURATION.test(text)) return undefined
  let total = 0
  for (const [, value, unit] of text.matchAll(PART)) total += Number(value) * UNIT_MS[unit]
  return Math.round(total)
}

/** Formats milliseconds the way the config writes them ("90s", "250ms"). */
export function formatDuration (ms: number): string {
  if (ms % 86_400_000 === 0 && ms > 0) return `${ms / 86_400_000}d`
  if (ms % 3_600_000 === 0 && ms > 0) return `${ms / 3_600_000}h`
  if (ms % 60_000 === 0 && ms > 0) return `${ms / 60_000}m`
  if (ms % 1000 === 0) return `${ms / 1000}s`
  return `${ms}ms`
}
