/**
 * @module daemon-adapter/units
 * Parsers for the human-written quantities of the config and VM files: durations
 * ("250ms", "10s", "5m", "2h", "30d") and sizes ("512M", "2G", "20GiB").
 */

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/
const DURATION_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/**
 * Parses a duration string into milliseconds.
 * @returns the milliseconds, or an error message
 */
export function parseDuration (text: string): number | string {
  const match = DURATION.exec(text.trim())
  if (match === null) return `"${text}" is not a duration (write e.g. "250ms", "10s", "5m", "2h", "30d")`
  return Math.round(Number(match[1]) * DURATION_MS[match[2]])
}

const SIZE = /^(\d+)\s*([KMGT])(i?B)?$/i
const SIZE_MIB: Record<string, number> = { K: 1 / 1024, M: 1, G: 1024, T: 1024 * 1024 }

/**
 * Parses a size ("512M", "2G", "20GiB"; binary units) into whole MiB.
 * @returns the MiB, or an error message
 */
export function parseSizeMiB (text: string): number | string {
  const match = SIZE.exec(text.trim())
  if (match === null) return `"${text}" is not a size (write e.g. "512M", "2G", "20G")`
  const mib = Number(match[1]) * SIZE_MIB[match[2].toUpperCase()]
  if (!Number.isInteger(mib) || mib < 1) return `"${text}" must be a whole number of MiB, at least 1M`
  return mib
}
