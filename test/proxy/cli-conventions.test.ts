// CLI conventions an operator expects (SPEC §13): --version, per-command --help on
// stdout with exit 0, "did you mean" for unknown commands and subcommands.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { CLI, NODE, ROOT } from '../helpers/proxy-process.ts'
import { nearestWord } from '../../proxy/suggest.ts'
import { buildInfo } from '../../proxy/build-info.ts'

function run (args: string[]): { status: number | null, stdout: string, stderr: string } {
  const r = spawnSync(NODE, [CLI, ...args], { encoding: 'utf8', cwd: ROOT, timeout: 20_000 })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

t.test('--version and version print the version, the commit and Node', async (t) => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }
  for (const args of [['--version'], ['version'], ['-V']]) {
    const r = run(args)
    t.equal(r.status, 0, `${args.join(' ')} exits 0`)
    t.match(r.stdout, new RegExp(`^vmfront ${pkg.version.replace(/\./g, '\\.')} .*on Node v\\d+\\.\\d+\\.\\d+\\n$`), `${args.join(' ')}: one line`)
    t.equal(r.stderr, '')
  }
  const info = buildInfo()
  t.equal(info.version, pkg.version)
  t.match(info.commit, /^([0-9a-f]{40})?$/, 'a full hash, or empty outside a checkout')
  if (info.commit !== '') t.match(run(['--version']).stdout, `commit ${info.commit.slice(0, 12)}`)
})

t.test('COMMAND --help prints that command\'s usage on stdout and exits 0', async (t) => {
  const cases: Array<[string[], string]> = [
    [['proxy', '--help'], 'Usage: vmfront proxy'],
    [['proxy', '-h'], 'Usage: vmfront proxy'],
    [['routes', '--help'], 'Usage: vmfront routes check [--all] FILE'],
    [['daemon', '--help'], 'usage: vmfront daemon'],
    [['vm', '--help'], 'usage: vmfront vm'],
    [['--help'], 'Usage: vmfront <command>'],
    [['help'], 'Usage: vmfront <command>']
  ]
  for (const [args, head] of cases) {
    const r = run(args)
    t.equal(r.status, 0, `${args.join(' ')} exits 0`)
    t.ok(r.stdout.startsWith(head), `${args.join(' ')}: usage on stdout`)
    t.equal(r.stderr, '', `${args.join(' ')}: nothing on stderr`)
  }
})

t.test('unknown commands and subcommands suggest the nearest one', async (t) => {
  const prxy = run(['prxy'])
  t.equal(prxy.status, 2)
  t.match(prxy.stderr, 'unknown command "prxy": did you mean "proxy"?')
  const chek = run(['routes', 'chek', 'x.json'])
  t.equal(chek.status, 2)
  t.match(chek.stderr, 'unknown subcommand "chek": did you mean "check"?')
  const far = run(['frobnicate'])
  t.equal(far.status, 2)
  t.notMatch(far.stderr, 'did you mean', 'nothing close: no suggestion')
})

t.test('nearestWord: typos within reach, nothing for unrelated words', async (t) => {
  const known = ['proxy', 'routes', 'daemon', 'vm', 'version', 'help']
  const cases: Array<[string, string | undefined]> = [
    ['proxy', 'proxy'], ['prxy', 'proxy'], ['porxy', 'proxy'], ['route', 'routes'], ['deamon', 'daemon'],
    ['versoin', 'version'], ['hlep', 'help'], ['v', undefined], ['xyz', undefined], ['frobnicate', undefined], ['', undefined]
  ]
  for (const [word, expected] of cases) t.equal(nearestWord(word, known), expected, `${JSON.stringify(word)} → ${String(expected)}`)
})
