/**
 * @module daemon-adapter/chain-check
 * Chain child mode: before the daemon accepts a new domain it asks the parent proxy
 * (`POST {parent_url}/chain/v1/check`, PSK as Bearer token) whether another child
 * owns it. The parent's answer is binding; an unreachable parent refuses the change
 * unless `chain.on_unreachable = "allow"`.
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

  async function ask (domains: readonly string[]): Promise<CheckAnswer> {
    let response: Response
    try {
      response = await fetchImpl(url, {
        method: 'POST',
        headers: { authorization: `Bearer ${config.psk}`, 'content-type': 'application/json' },
        body: JSON.stringify({ name: config.name, domains }),
        signal: AbortSignal.timeout(config.timeoutMs)
      })
    } catch (err) {
      const reason = (err as Error).name === 'TimeoutError' ? `no answer within ${config.timeoutMs} ms` : ((err as Error).cause as Error | undefined)?.message ?? (err as Error).message
      throw new AdapterError('CHAIN_UNREACHABLE', `cannot ask the chain parent ${url} about conflicts: ${reason}`, { cause: err })
    }
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
