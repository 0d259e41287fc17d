#!/usr/bin/env node
// The `vmfront` bin: a plain-JavaScript launcher, because the sources are .ts run by
// Node's type stripping (22.18+, 23.6+, 24). An older Node (Debian 12 ships 20) would
// fail on the first .ts import with ERR_UNKNOWN_FILE_EXTENSION and a stack trace; this
// file parses on it and says what to do in one line instead. Keep it plain JavaScript
// that Node 18/20 can parse: no types, no syntax newer than ES2020.

const version = process.versions.node
const [major, minor] = version.split('.').map(Number)
// process.features.typescript ('strip', 'transform' or false) exists from Node 22.10:
// it also catches a new Node started with --no-experimental-strip-types.
const typescript = process.features.typescript
const newEnough = major > 23 || (major === 23 && minor >= 6) || (major === 22 && minor >= 18)

if (!newEnough) {
  process.stderr.write(`vmfront needs Node 22.18+ (this is Node v${version}): use node_modules/.bin/node or install Node 24\n`)
  process.exit(1)
} else if (typescript === false) {
  process.stderr.write(`vmfront needs Node's type stripping, which is turned off (Node v${version}, --no-experimental-strip-types?): run it without that flag\n`)
  process.exit(1)
}

// Dynamic, so that this file is parsed and the check above runs before any .ts is loaded.
// cli.ts reads process.argv itself and runs on import.
await import('./cli.ts')
