// redirect_to_https travels with a registration (the parent applies it): checked
// at the API boundary, kept by the registry's change detection, saved and restored.
import t from 'tap'
import { join } from 'node:path'
import { parseRegisterRequest, toWireDomain } from '../../proxy/chain/schema.ts'
import { createChildRegistry } from '../../proxy/chain/registry.ts'
import { createRegistrationStore } from '../../proxy/chain/persist.ts'
import { tempDir } from '../helpers/proxy-process.ts'
import { memoryLogger } from './chain-helpers.ts'

const body = (domains: unknown[]) => ({ name: 'c', child_url: 'http://10.0.0.2', domains })

t.test('the register body takes redirect_to_https as a boolean', async (t) => {
  t.same(parseRegisterRequest(body([{ domain: 'a.example.com', redirect_to_https: true }, { domain: 'b.example.com', redirect_to_https: false }])).domains,
    [{ domain: 'a.example.com', redirectToHttps: true }, { domain: 'b.example.com' }])
  t.throws(() => parseRegisterRequest(body([{ domain: 'a.example.com', redirect_to_https: 'yes' }])), { code: 'CHAIN_BAD_REQUEST', message: /^domains\[0\]\.redirect_to_https: must be true or false$/ })
  t.same(toWireDomain({ domain: 'a.example.com', rateProfile: 'p', redirectToHttps: true }), { domain: 'a.example.com', rate_profile: 'p', redirect_to_https: true })
  t.same(toWireDomain({ domain: 'a.example.com' }), { domain: 'a.example.com' })
})

t.test('turning redirect_to_https on is a change; it is saved and restored', async (t) => {
  const registry = createChildRegistry({ leaseTtlMs: 1000, parentServes: () => false })
  registry.register(parseRegisterRequest(body([{ domain: 'a.example.com' }])), 0)
  const on = registry.register(parseRegisterRequest(body([{ domain: 'a.example.com', redirect_to_https: true }])), 1)
  t.equal(on.changed, true)
  t.equal(registry.register(parseRegisterRequest(body([{ domain: 'a.example.com', redirect_to_https: true }])), 2).changed, false, 'the same again is a renewal')
  const store = createRegistrationStore(join(tempDir(t), 'chain-children.json'), memoryLogger().logger)
  await store.save(registry.children())
  t.same((await store.load())[0].domains, [{ domain: 'a.example.com', redirectToHttps: true }])
})
