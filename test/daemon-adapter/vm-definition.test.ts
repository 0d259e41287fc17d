/**
 * VM definition files: Mulch's syntax parsed and every mistake named by file, key and value.
 */
import t from 'tap'
import { parseVmDefinitionText, claimedDomains, definitionToJson, parseVmDefinition } from '../../daemon-adapter/vm-definition.ts'
import { AdapterError, FileInvalidError } from '../../daemon-adapter/errors.ts'

const STATIC = { driver: 'static', defaultNetwork: 'default' } as const
const LIBVIRT = { driver: 'libvirt', defaultNetwork: 'vmnet' } as const

t.test('a full static definition', async (t) => {
  const def = parseVmDefinitionText(`
name = "app"
address = "10.104.0.12"
domains = ['app.example.com->8080', 'b.example.com']
redirects = [['www.app.example.com', 'app.example.com', '301'], ['old.example.com', 'app.example.com']]
redirect_to_https = false
rate_profile = "strict"
`, 'app.toml', STATIC)
  t.same(def.domains, [{ domain: 'app.example.com', port: 8080 }, { domain: 'b.example.com', port: 80 }])
  t.same(def.redirects, [
    { from: 'www.app.example.com', to: 'app.example.com', code: 301 },
    { from: 'old.example.com', to: 'app.example.com', code: 302 }
  ])
  t.equal(def.redirectToHttps, false)
  t.equal(def.rateProfile, 'strict')
  t.equal(def.address, '10.104.0.12')
  t.same(claimedDomains(def), ['app.example.com', 'b.example.com', 'www.app.example.com', 'old.example.com'])
  t.ok(Object.isFrozen(def))
  // The JSON form round-trips through the parser.
  t.same(parseVmDefinition(definitionToJson(def), 'x', STATIC), def)
})

t.test('defaults: redirect_to_https true, no profile, no redirects', async (t) => {
  const def = parseVmDefinitionText('name = "a"\naddress = "vm-host"\ndomains = ["a.example.com"]', 'a.toml', STATIC)
  t.equal(def.redirectToHttps, true)
  t.equal(def.rateProfile, '')
  t.same(def.redirects, [])
})

t.test('libvirt definitions', async (t) => {
  const def = parseVmDefinitionText('name = "db"\ndomains = ["db.example.com->5432"]\ncpus = 4\nram = "2G"\ndisk_size = "40G"\nseed = "debian-12.qcow2"', 'db.toml', LIBVIRT)
  t.same(def.libvirt, { cpus: 4, ramMiB: 2048, diskMiB: 40960, seed: 'debian-12.qcow2', network: 'vmnet' })
  t.equal(def.address, undefined)
  const small = parseVmDefinitionText('name = "x"\nram = "512M"\nnetwork = "other"', 'x.toml', LIBVIRT)
  t.same(small.libvirt, { cpus: 1, ramMiB: 512, diskMiB: 20480, seed: '', network: 'other' })
})

// Each bad file: the key that must be named, and a piece of the value/reason.
const BAD: { name: string, toml: string, key: string, mentions: string, context?: typeof STATIC | typeof LIBVIRT }[] = [
  { name: 'unknown key', toml: 'name = "a"\naddress = "h"\ncolour = "blue"', key: 'colour', mentions: '"blue"' },
  { name: 'missing name', toml: 'address = "h"', key: 'name', mentions: 'required' },
  { name: 'bad name', toml: 'name = "Bad Name"\naddress = "h"', key: 'name', mentions: '"Bad Name"' },
  { name: 'missing address', toml: 'name = "a"', key: 'address', mentions: 'static driver' },
  { name: 'bad address', toml: 'name = "a"\naddress = "not an address!"', key: 'address', mentions: 'not an address!' },
  { name: 'domains not an array', toml: 'name = "a"\naddress = "h"\ndomains = "a.example.com"', key: 'domains', mentions: 'array' },
  { name: 'upper-case domain', toml: 'name = "a"\naddress = "h"\ndomains = ["App.example.com"]', key: 'domains[0]', mentions: 'lower-case' },
  { name: 'port out of range', toml: 'name = "a"\naddress = "h"\ndomains = ["a.example.com->70000"]', key: 'domains[0]', mentions: '70000' },
  { name: 'port not a number', toml: 'name = "a"\naddress = "h"\ndomains = ["a.example.com->http"]', key: 'domains[0]', mentions: 'http' },
  { name: 'domain is an IP', toml: 'name = "a"\naddress = "h"\ndomains = ["10.0.0.1->80"]', key: 'domains[0]', mentions: 'IP address' },
  { name: 'domain not a string', toml: 'name = "a"\naddress = "h"\ndomains = [80]', key: 'domains[0]', mentions: '80' },
  { name: 'duplicate domain', toml: 'name = "a"\naddress = "h"\ndomains = ["a.example.com", "a.example.com->81"]', key: 'domains[1]', mentions: 'domains[0]' },
  { name: 'redirect source is a domain', toml: 'name = "a"\naddress = "h"\ndomains = ["a.example.com"]\nredirects = [["a.example.com", "b.example.com"]]', key: 'redirects[0][0]', mentions: 'domains[0]' },
  { name: 'bad redirect code', toml: 'name = "a"\naddress = "h"\nredirects = [["w.example.com", "a.example.com", "303"]]', key: 'redirects[0][2]', mentions: '"303"' },
  { name: 'redirect too short', toml: 'name = "a"\naddress = "h"\nredirects = [["w.example.com"]]', key: 'redirects[0]', mentions: 'w.example.com' },
  { name: 'redirect to itself', toml: 'name = "a"\naddress = "h"\nredirects = [["w.example.com", "w.example.com"]]', key: 'redirects[0]', mentions: 'itself' },
  { name: 'redirect to bad host', toml: 'name = "a"\naddress = "h"\nredirects = [["w.example.com", "bad_host"]]', key: 'redirects[0][1]', mentions: 'bad_host' },
  { name: 'redirect_to_https not boolean', toml: 'name = "a"\naddress = "h"\nredirect_to_https = "yes"', key: 'redirect_to_https', mentions: '"yes"' },
  { name: 'bad rate profile', toml: 'name = "a"\naddress = "h"\nrate_profile = "no spaces"', key: 'rate_profile', mentions: 'no spaces' },
  { name: 'libvirt key with static driver', toml: 'name = "a"\naddress = "h"\ncpus = 2', key: 'cpus', mentions: 'static driver' },
  { name: 'address with libvirt driver', toml: 'name = "a"\naddress = "h"', key: 'address', mentions: 'libvirt driver', context: LIBVIRT },
  { name: 'bad ram', toml: 'name = "a"\nram = "lots"', key: 'ram', mentions: '"lots"', context: LIBVIRT },
  { name: 'bad cpus', toml: 'name = "a"\ncpus = 0', key: 'cpus', mentions: '0', context: LIBVIRT },
  { name: 'TOML syntax error', toml: 'name = "a', key: '(syntax)', mentions: '' }
]

for (const c of BAD) {
  t.test(`rejects: ${c.name}`, async (t) => {
    const err = t.throws(() => parseVmDefinitionText(c.toml, 'vm.toml', c.context ?? STATIC)) as FileInvalidError
    t.ok(err instanceof AdapterError)
    t.equal(err.code, 'VM_INVALID')
    t.equal(err.exitCode, 2)
    t.match(err.message, /^vm\.toml: /, 'the message names the file')
    const problem = err.problems.find((p) => p.key === c.key)
    t.ok(problem, `a problem names the key ${c.key}: ${JSON.stringify(err.problems)}`)
    t.match(err.message, c.key)
    if (c.mentions !== '') t.match(problem?.message ?? '', c.mentions)
  })
}

t.test('every problem of a file is reported at once', async (t) => {
  const err = t.throws(() => parseVmDefinitionText('name = "A"\ndomains = ["X.com"]\nfoo = 1', 'many.toml', STATIC)) as FileInvalidError
  t.same(err.problems.map((p) => p.key).sort(), ['address', 'domains[0]', 'foo', 'name'])
})
