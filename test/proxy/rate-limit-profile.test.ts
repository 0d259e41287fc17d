/**
 * parseRateProfiles (proxy/rate-profile.ts): the `[[rate_profile]]` tables of the
 * config, as tables of good and bad inputs with the key path of each problem.
 */
import t from 'tap'
import { parseRateProfiles, RATE_PROFILE_DEFAULTS } from '../../proxy/rate-profile.ts'
import type { RateProfile } from '../../proxy/rate-profile.ts'

function ok (raw: unknown): readonly RateProfile[] {
  const r = parseRateProfiles(raw)
  if (!r.ok) throw new Error(JSON.stringify(r.problems))
  return r.profiles
}

t.test('absent or empty: one implicit, unlimited default', async (t) => {
  for (const raw of [undefined, []]) {
    t.same(ok(raw), [{ name: 'default', ...RATE_PROFILE_DEFAULTS }])
  }
})

t.test('a full profile, with durations and VIPs; default added when not declared', async (t) => {
  const profiles = ok([{
    name: 'wordpress',
    concurrent_max_requests: 8,
    concurrent_overflow_timeout: '5s',
    limit_burst_requests: 20,
    limit_requests_per_second: 2.5,
    limit_max_delay: '1m30s',
    vip_list: ['203.0.113.9', '2001:db8::/32']
  }])
  t.same(profiles, [
    {
      name: 'wordpress',
      concurrentMaxRequests: 8,
      concurrentOverflowTimeoutMs: 5000,
      limitBurstRequests: 20,
      limitRequestsPerSecond: 2.5,
      limitMaxDelayMs: 90_000,
      vipList: ['203.0.113.9', '2001:db8::/32']
    },
    { name: 'default', ...RATE_PROFILE_DEFAULTS }
  ])
  t.ok(Object.isFrozen(profiles) && Object.isFrozen(profiles[0]) && Object.isFrozen(profiles[0].vipList), 'deep-frozen')
})

t.test('a declared default replaces the implicit one; omitted keys take the SPEC defaults', async (t) => {
  const profiles = ok([{ name: 'default', concurrent_max_requests: 4 }, { name: 'api', limit_burst_requests: 1n, limit_requests_per_second: 10n, limit_max_delay: '500ms' }])
  t.equal(profiles.length, 2)
  t.same(profiles[0], { ...RATE_PROFILE_DEFAULTS, name: 'default', concurrentMaxRequests: 4 })
  t.match(profiles[1], { name: 'api', limitBurstRequests: 1, limitRequestsPerSecond: 10, limitMaxDelayMs: 500, concurrentOverflowTimeoutMs: 2000 })
})

t.test('problems are reported with their key path, all of them', async (t) => {
  const cases: Array<[string, unknown, string[]]> = [
    ['not an array', { name: 'x' }, ['rate_profile']],
    ['entry not a table', ['x'], ['rate_profile[0]']],
    ['missing name', [{ concurrent_max_requests: 1 }], ['rate_profile[0]']],
    ['bad name', [{ name: 'a b' }], ['rate_profile[0].name']],
    ['unknown key', [{ name: 'x', limit_burst: 3 }], ['rate_profile[0].limit_burst']],
    ['duplicate name', [{ name: 'x' }, { name: 'y' }, { name: 'x' }], ['rate_profile[2].name']],
    ['negative count', [{ name: 'x', concurrent_max_requests: -1 }], ['rate_profile[0].concurrent_max_requests']],
    ['fractional count', [{ name: 'x', limit_burst_requests: 1.5, limit_requests_per_second: 1 }], ['rate_profile[0].limit_burst_requests']],
    ['count as string', [{ name: 'x', concurrent_max_requests: '4' }], ['rate_profile[0].concurrent_max_requests']],
    ['huge count', [{ name: 'x', concurrent_max_requests: 1e9 }], ['rate_profile[0].concurrent_max_requests']],
    ['duration without unit', [{ name: 'x', limit_burst_requests: 1, limit_requests_per_second: 1, limit_max_delay: '2' }], ['rate_profile[0].limit_max_delay']],
    ['duration as number', [{ name: 'x', concurrent_overflow_timeout: 2 }], ['rate_profile[0].concurrent_overflow_timeout']],
    ['negative rate', [{ name: 'x', limit_burst_requests: 1, limit_requests_per_second: -1 }], ['rate_profile[0].limit_requests_per_second']],
    ['burst without rate', [{ name: 'x', limit_burst_requests: 5 }], ['rate_profile[0].limit_requests_per_second']],
    ['rate without burst', [{ name: 'x', limit_requests_per_second: 5 }], ['rate_profile[0].limit_requests_per_second']],
    ['max delay without burst', [{ name: 'x', limit_max_delay: '1s' }], ['rate_profile[0].limit_max_delay']],
    ['vip_list not an array', [{ name: 'x', vip_list: '1.2.3.4' }], ['rate_profile[0].vip_list']],
    ['bad VIP entries', [{ name: 'x', vip_list: ['1.2.3.4', 'example.com', 7, '10.0.0.0/33', '2001:db8::/129'] }],
      ['rate_profile[0].vip_list[1]', 'rate_profile[0].vip_list[2]', 'rate_profile[0].vip_list[3]', 'rate_profile[0].vip_list[4]']],
    ['several profiles, several problems', [{ name: 'a', concurrent_max_requests: -1 }, { name: 'b', limit_max_delay: 'soon' }],
      ['rate_profile[0].concurrent_max_requests', 'rate_profile[1].limit_max_delay']]
  ]
  for (const [what, raw, paths] of cases) {
    const r = parseRateProfiles(raw)
    t.notOk(r.ok, what)
    if (r.ok) continue
    t.same(r.problems.map((p) => p.path), paths, what)
    for (const p of r.problems) t.ok(p.message.length > 0, `${what}: ${p.path} ${p.message}`)
  }
})

t.test('the key prefix names where the tables sit', async (t) => {
  const r = parseRateProfiles([{ name: 'x', limit_max_delay: 'later' }], 'proxy.rate_profile')
  t.same(r.ok ? [] : r.problems.map((p) => p.path), ['proxy.rate_profile[0].limit_max_delay'])
})

t.test('warnings: duplicate VIPs, VIPs on a profile that limits nothing', async (t) => {
  const r = parseRateProfiles([{ name: 'x', concurrent_max_requests: 1, vip_list: ['1.2.3.4', '1.2.3.4'] }, { name: 'y', vip_list: ['1.2.3.4'] }])
  t.ok(r.ok)
  t.same(r.warnings.map((w) => w.path), ['rate_profile[0].vip_list[1]', 'rate_profile[1].vip_list'])
  t.same(r.ok ? r.profiles[0].vipList : [], ['1.2.3.4'])
})
