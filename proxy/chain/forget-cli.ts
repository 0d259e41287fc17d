/**
 * @module proxy/chain/forget-cli
 * `vmfront chain forget [--config FILE | --admin URL] NAME_OR_URL`: asks a chain
 * parent, on its admin listener, to drop a child now (`POST /chain/forget`). A
 * mulch-proxy child has no lease, so this is how an operator removes one.
 * Exit status: 0 removed, 1 not found or the parent unreachable, 2 bad usage.
 */
import { parseArgs } from 'node:util'
import { loadConfig } from '../config.ts'
import { FileInvalidError, ProxyError } from '../errors.ts'

export const CHAIN_USAGE = `Usage: vmfront chain forget [--config FILE | --admin URL] NAME_OR_URL

Removes a child from a running chain parent now: its domains are no longer
routed and its saved registration is dropped. NAME_OR_URL is a vmfront child's
name or any child's URL (a mulch-proxy child is named by its ForwardTo URL; see
"chain.children" in GET /status). A vmfront child comes back at its next renewal.

Options:
  -c, --config FILE   the parent's TOML configuration (its listen.admin is called)
      --admin URL     the parent's admin listener instead (default http://127.0.0.1:9180)
  -h, --help          this text
`

function fail (code: number, message: string): number {
  process.stderr.write(message.endsWith('\n') ? message : message + '\n')
  return code
}

/** Runs `vmfront chain ...`; resolves to the exit code. */
export async function runChainCommand (args: string[]): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({ args, options: { config: { type: 'string', short: 'c' }, admin: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals: true })
  } catch (err) {
    return fail(2, `vmfront chain: ${(err as Error).message}\n\n${CHAIN_USAGE}`)
  }
  const { values, positionals } = parsed
  if (values.help === true || positionals[0] === 'help') {
    process.stdout.write(CHAIN_USAGE)
    return 0
  }
  const [sub, child, ...rest] = positionals
  if (sub !== 'forget') return fail(2, `vmfront chain: ${sub === undefined ? 'a subcommand is required' : `unknown subcommand "${sub}"`} (known: forget)\n\n${CHAIN_USAGE}`)
  if (child === undefined || child === '' || rest.length > 0) return fail(2, CHAIN_USAGE)
  if (values.config !== undefined && values.admin !== undefined) return fail(2, 'vmfront chain forget: give --config or --admin, not both')

  let admin = values.admin ?? 'http://127.0.0.1:9180'
  if (values.config !== undefined) {
    try {
      const listen = loadConfig(values.config).listen.admin
      if (listen === undefined) return fail(2, `vmfront chain forget: ${values.config} has no admin listener (listen.admin is empty)`)
      const host = listen.host === '0.0.0.0' || listen.host === '' ? '127.0.0.1' : listen.host === '::' ? '::1' : listen.host
      admin = `http://${host.includes(':') ? `[${host}]` : host}:${listen.port}`
    } catch (err) {
      if (err instanceof FileInvalidError) return fail(2, `vmfront chain forget: invalid configuration in ${err.file}:\n${err.problems.map((p) => `  ${p.path}: ${p.message}`).join('\n')}`)
      if (err instanceof ProxyError) return fail(2, `vmfront chain forget: ${err.message}`)
      throw err
    }
  }
  let res: Response
  try {
    res = await fetch(`${admin.replace(/\/+$/, '')}/chain/forget`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ child }), signal: AbortSignal.timeout(10_000) })
  } catch (err) {
    return fail(1, `vmfront chain forget: the parent's admin listener ${admin} is unreachable: ${(err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : (err as Error).message}`)
  }
  const body = await res.json().catch(() => ({})) as { forgotten?: Array<{ name: string, url: string, domains: string[] }>, error?: string }
  if (res.status !== 200) return fail(res.status === 404 ? 1 : 2, `vmfront chain forget: ${body.error ?? `the parent answered ${res.status}`}`)
  for (const c of body.forgotten ?? []) process.stdout.write(`forgot ${c.name} (${c.url}): ${c.domains.length} domain${c.domains.length === 1 ? '' : 's'}${c.domains.length > 0 ? ` ${c.domains.join(', ')}` : ''}\n`)
  return 0
}
