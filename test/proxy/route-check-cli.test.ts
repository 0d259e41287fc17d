// `vmfront routes check`: a FIFO never hangs it, and 100,000 problems make a short report (issue 9 points 4 and 7).
import t from 'tap'
import { execFileSync, spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { CLI, NODE, tempDir } from '../helpers/proxy-process.ts'

interface Run { code: number | null, signal: string | null, stdout: string, stderr: string, ms: number }

/** Runs the CLI, killing it (and failing the check that follows) if it has not exited within `timeoutMs`. */
function run (args: string[], timeoutMs = 20_000): Promise<Run> {
  const started = Date.now()
  const child = spawn(NODE, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (c: string) => { stdout += c })
  child.stderr.setEncoding('utf8').on('data', (c: string) => { stderr += c })
  const timer = setTimeout(() => { child.kill('SIGKILL') }, timeoutMs)
  return new Promise((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started })
    })
  })
}

t.test('routes check refuses a FIFO, a directory and a device at once, naming the file', async (t) => {
  const dir = tempDir(t)
  const fifo = join(dir, 'routes.json')
  execFileSync('mkfifo', [fifo])
  for (const [file, kind] of [[fifo, 'a named pipe (FIFO)'], [dir, 'a directory'], ['/dev/zero', 'a character device']]) {
    const r = await run(['routes', 'check', file], 10_000)
    t.equal(r.signal, null, `${kind}: not killed by the test's timeout (it did not hang)`)
    t.equal(r.code, 2)
    t.equal(r.stderr, `${file}: is ${kind}, not a regular file: refused\n`)
  }
})

t.test('100,000 invalid routes: the first 20 problems, a count, a short verdict; --all lists them all', async (t) => {
  const dir = tempDir(t)
  const file = join(dir, 'routes.json')
  const n = 100_000
  writeFileSync(file, JSON.stringify({ version: 1, routes: Array.from({ length: n }, (_, i) => ({ domain: `vm${i}.test`, target: 'ftp://x' })) }))
  const r = await run(['routes', 'check', file])
  t.equal(r.code, 2)
  const lines = r.stdout.trimEnd().split('\n')
  t.equal(lines.length, 21, '20 problems and one summary line')
  t.equal(lines[0], `${file}: $.routes[0].target: "ftp://x" must use http:// (the VM side speaks plain HTTP)`)
  t.equal(lines[20], `${file}: and 99,980 more problems (--all lists them)`)
  t.equal(r.stderr, `${file}: invalid, 100,000 problems at $.routes[0].target, $.routes[1].target, $.routes[2].target, $.routes[3].target, $.routes[4].target, ... (99,995 more)\n`)
  t.ok(r.stderr.length < 400, `the verdict is ${r.stderr.length} bytes`)

  const all = await run(['routes', 'check', '--all', file])
  t.equal(all.code, 2)
  const allLines = all.stdout.trimEnd().split('\n')
  t.equal(allLines.length, n, 'every problem listed')
  t.equal(allLines[n - 1], `${file}: $.routes[99999].target: "ftp://x" must use http:// (the VM side speaks plain HTTP)`)
  t.equal(all.stderr, r.stderr, 'the same one-line verdict')
})

t.test('routes check: usage errors and the warnings of a valid file', async (t) => {
  const dir = tempDir(t)
  const file = join(dir, 'routes.json')
  writeFileSync(file, '{}\n')
  const empty = await run(['routes', 'check', file])
  t.equal(empty.code, 0)
  t.equal(empty.stdout, `${file}: valid (0 routes, mulch-legacy format)\n`)
  t.match(empty.stderr, `${file}: warning: $: is an empty object: read as Mulch's empty domains file`)
  const bad = await run(['routes', 'check', '--everything', file])
  t.equal(bad.code, 2)
  t.match(bad.stderr, /Usage: vmfront routes check \[--all\] FILE/)
})
