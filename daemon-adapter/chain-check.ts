/**
 * @module daemon-adapter/chain-check
 * Chain child mode: before the daemon accepts a new domain it asks the parent proxy
 * whether another child owns it: a vmfront parent at `POST {parent_url}/chain/v1/check`
 * (PSK as Bearer token), a mulch-proxy parent at `POST {parent_url}/domains/conflicts`
 * (`Mulch-PSK`, Mulch's JSON, as mulchd asks). The parent's answer is binding; an
 * unreachable parent refuses the change unless `chain.on_unreachable = "allow"`.
 */
import { AdapterError } from './errors.ts'
import type { ChainConfig } from './config.ts'
import type { Logger } from './log.ts'

/** Asks the parent about domains; resolves when they are free, throws otherwise. */
export type ParentCheck = (domains: readonly string[]) => Promise<void>

interface CheckAnswer {
  conflicts?: { domain?: unknown, owner?: unknown }[]
}

/**
 * Creates the conflict check for `config`, or undefined when this host is not a chain
 * child (`chain.parent_url` empty).
 * @throws (from the check) AdapterError CHAIN_CONFLICT, CHAIN_REJECTED, CHAIN_UNREACHABLE
 */
export function createParentCheck (config: ChainConfig, log: Logger, fetchImpl: typeof fetch = fetch): ParentCheck | undefined {
  if (config.parentUrl === '') return undefined
  const url = `${config.parentUrl}/chain/v1/check`

  const mulchUrl = `${config.parentUrl}/domains/conflicts`
  // "auto" settles on the first parent that answers which API it speaks.
  let protocol: 'auto' | 'vmfront' | 'mulch' = config.parentProtocol

  async function post (target: string, headers: Record<string, string>, body: unknown): Promise<Response> {
    try {
      return await fetchImpl(target, {
        method: 'POST',
        headers: { ...headers, 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(config.timeoutMs)
      })
    } catch (err) {
      const reason = (err as Error).name === 'TimeoutError' ? `no answer within ${config.timeoutMs} ms` : ((err as Error).cause as Error | undefined)?.message ?? (err as Error).message
      throw new AdapterError('CHAIN_UNREACHABLE', `cannot ask the chain parent ${target} about conflicts: ${reason}`, { cause: err })
    }
  }

  /** mulchd's question to a mulch-proxy parent; its answer is a JSON array (or null) of {Domain, Owner}. */
  async function askMulch (domains: readonly string[]): Promise<CheckAnswer> {
    const response = await post(mulchUrl, { 'mulch-psk': config.psk }, { Domains: domains.map((d) => ({ Domain: d, RateProfile: '' })), ForwardTo: config.childUrl })
    if (response.status === 403) {
      await response.body?.cancel()
      throw new AdapterError('CHAIN_REJECTED', `the chain parent ${mulchUrl} refused this child's PSK (403): check chain.psk`)
    }
    if (response.status !== 200) {
      const text = (await response.text()).slice(0, 200)
      throw new AdapterError('CHAIN_UNREACHABLE', `the chain parent ${mulchUrl} answered ${response.status}: ${text}`)
    }
    let list: unknown
    try {
      list = await response.json()
    } catch (err) {
      throw new AdapterError('CHAIN_UNREACHABLE', `the chain parent ${mulchUrl} answered with invalid JSON`, { cause: err })
    }
    if (list !== null && !Array.isArray(list)) throw new AdapterError('CHAIN_UNREACHABLE', `the chain parent ${mulchUrl} answered with something else than a list of conflicts`)
    return { conflicts: ((list ?? []) as Array<{ Domain?: unknown, Owner?: unknown }>).map((c) => ({ domain: c?.Domain, owner: c?.Owner })) }
  }

  async function ask (domains: readonly string[]): Promise<CheckAnswer> {
    if (protocol === 'mulch') return await askMulch(domains)
    const response = await post(url, { authorization: `Bearer ${config.psk}` }, { name: config.name, domains })
    if (response.status === 404 && protocol === 'auto') {
      // A mulch-proxy parent has no /chain/v1/check (Go's "404 page not found").
      await response.body?.cancel()
      protocol = 'mulch'
      return await askMulch(domains)
    }
    if (protocol === 'auto') protocol = 'vmfront'
    if (response.status === 401) {
      await response.body?.cancel()
      throw new AdapterError('CHAIN_REJECTED', `the chain parent ${url} refused this child's PSK (401): check chain.psk`)
    }
    if (response.status !== 200) {
      const text = (await response.text()).slice(0, 200)
      throw new AdapterError('CHAIN_UNREACHABLE', `the chain parent ${url} answered ${response.status}: ${text}`)
    }
    try {
      return await response.json() as CheckAnswer
    } catch (err) {
      throw new AdapterError('CHAIN_UNREACHABLE', `the chain parent ${url} answered with invalid JSON`, { cause: err })
    }
  }

  return async function checkWithParent (domains) {
    if (domains.length === 0) return
    let answer: CheckAnswer
    try {
      answer = await ask(domains)
    } catch (err) {
      if (err instanceof AdapterError && err.code === 'CHAIN_UNREACHABLE' && config.onUnreachable === 'allow') {
        log.warn('chain parent unreachable; accepting domains unchecked (chain.on_unreachable = "allow")', { domains, err })
        return
      }
      throw err
    }
    const conflicts = (answer.conflicts ?? []).filter((c) => typeof c.domain === 'string')
      .map((c) => ({ domain: c.domain as string, owner: typeof c.owner === 'string' ? c.owner : 'another child' }))
    if (conflicts.length > 0) {
      const text = conflicts.map((c) => `${c.domain} is already claimed by "${c.owner}" at the chain parent`).join('; ')
      throw new AdapterError('CHAIN_CONFLICT', text, { details: { conflicts } })
    }
  }
}
