// The daemon in chain child mode asks a real parent proxy before accepting a domain:
// the parent's answer is binding (a domain owned by another child or by the parent's
// own routes is refused, naming it and its owner).
import t from 'tap'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { startBackend } from '../helpers/backend.ts'
import { routesDoc } from '../helpers/proxy-process.ts'
import { runVm, startDaemonProcess, tempDir, writeDaemonConfig } from '../daemon-adapter/daemon-process.ts'
import { PSK, startChild, startParent } from './chain-helpers.ts'

t.test('daemon conflict check against a real parent', async (t) => {
  const vm = await startBackend(t)
  const parent = await startParent(t, { routes: routesDoc([{ domain: 'own.example.com', target: vm.origin }]) })
  await startChild(t, { apiPort: parent.apiPort, name: 'c1', routes: routesDoc([{ domain: 'app.example.com', target: vm.origin }]) })
  await parent.waitForLog((l) => l.msg === 'chain child registered' && l.child === 'c1')

  const start = async (psk: string): Promise<{ env: NodeJS.ProcessEnv, file: (name: string, text: string) => string }> => {
    const dir = tempDir(t)
    const config = writeDaemonConfig(dir, `[chain]\nparent_url = "http://127.0.0.1:${parent.apiPort}"\npsk = "${psk}"\nname = "c2"\n`)
    const daemon = await startDaemonProcess(t, config)
    const env = { VMFRONT_URL: daemon.url, VMFRONT_KEY: readFileSync(join(dir, 'data', 'api-key'), 'utf8').trim() }
    return { env, file: (name, text) => { const f = join(dir, `${name}.toml`); writeFileSync(f, text); return f } }
  }

  const { env, file } = await start(PSK)
  const taken = await runVm(['vm', 'create', file('a', `name = "a"\naddress = "127.0.0.1"\ndomains = ["app.example.com->${vm.port}"]\n`)], env)
  t.equal(taken.code, 1, 'a domain owned by another child is refused')
  t.match(taken.stderr, 'app.example.com')
  t.match(taken.stderr, 'c1')

  const own = await runVm(['vm', 'create', file('b', `name = "b"\naddress = "127.0.0.1"\ndomains = ["own.example.com->${vm.port}"]\n`)], env)
  t.equal(own.code, 1, 'a domain of the parent\'s own route file is refused')
  t.match(own.stderr, 'own.example.com')

  const free = await runVm(['vm', 'create', file('c', `name = "c"\naddress = "127.0.0.1"\ndomains = ["free.example.com->${vm.port}"]\n`)], env)
  t.equal(free.code, 0, `a free domain is accepted: ${free.stderr}`)

  const wrong = await start('a-wrong-psk-0123456789')
  const refused = await runVm(['vm', 'create', wrong.file('d', `name = "d"\naddress = "127.0.0.1"\ndomains = ["other.example.com->${vm.port}"]\n`)], wrong.env)
  t.not(refused.code, 0, 'with a wrong PSK nothing is accepted')
  t.match(refused.stderr, /401|PSK|psk|auth/i)
})
