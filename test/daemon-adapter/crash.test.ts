/**
 * kill -9 of the daemon in the middle of a change, then a restart: the database is
 * consistent (no half-made VM, no revision stuck pending or retiring) and the route
 * file is rewritten to match it.
 */
import t from 'tap'
import { readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { parseRouteFileText } from '../../proxy/route-table.ts'
import { startBackend, deadPort } from '../helpers/backend.ts'
import { runCli, runVm, startDaemonProcess, tempDir, writeDaemonConfig } from './daemon-process.ts'

function routeTargets (file: string): Record<string, string | undefined> {
  const parsed = parseRouteFileText(readFileSync(file, 'utf8'))
  if (!parsed.ok) throw new Error(`route file invalid: ${JSON.stringify(parsed.errors)}`)
  return Object.fromEntries(parsed.table.routes.map((r) => [r.domain, r.target?.origin]))
}

t.test('kill -9 while a create, a rebuild and a retirement are in flight', async (t) => {
  const dir = tempDir(t)
  const live = await startBackend(t)
  const dead = await deadPort()
  // tcp probe: a revision is up once its port accepts connections; the dead port
  // never does, so those changes stay in flight until the kill.
  const configFile = writeDaemonConfig(dir, '', 'up_probe = "tcp"\nup_timeout = "60s"')
  const routesFile = join(dir, 'routes.json')
  let daemon = await startDaemonProcess(t, configFile)
  const key = readFileSync(join(dir, 'data', 'api-key'), 'utf8').trim()
  const env = (): NodeJS.ProcessEnv => ({ VMFRONT_URL: daemon.url, VMFRONT_KEY: key })
  const file = (name: string, text: string): string => { const f = join(dir, `${name}.toml`); writeFileSync(f, text); return f }

  const keep = file('keep', `name = "keep"\naddress = "127.0.0.1"\ndomains = ["keep.example.com->${live.port}"]\n`)
  t.equal((await runVm(['vm', 'create', keep], env())).code, 0)
  const moving = file('moving', `name = "moving"\naddress = "127.0.0.1"\ndomains = ["moving.example.com->${live.port}"]\n`)
  t.equal((await runVm(['vm', 'create', moving], env())).code, 0)

  // 1. A create waiting for its VM to come up.
  const from1 = daemon.logs.length
  const ghost = file('ghost', `name = "ghost"\naddress = "127.0.0.1"\ndomains = ["ghost.example.com->${dead}"]\n`)
  const ghostCreate = runVm(['vm', 'create', ghost], env())
  await daemon.waitForLog((l) => l.msg === 'VM revision created' && l.vm === 'ghost', 10_000, from1)
  // 2. A rebuild of "keep" towards the dead port, pending beside the active r0.
  const keepDead = file('keep-dead', `name = "keep"\naddress = "127.0.0.1"\ndomains = ["keep.example.com->${dead}"]\n`)
  const keepRebuild = runVm(['vm', 'rebuild', 'keep', keepDead], env())
  await daemon.waitForLog((l) => l.msg === 'VM revision created' && l.vm === 'keep' && l.revision === 1, 10_000, from1)
  t.match(JSON.parse((await runVm(['vm', 'info', 'keep', '--json'], env())).stdout).revisions, [{ number: 1, state: 'pending' }, { number: 0, state: 'active' }])
  t.equal(routeTargets(routesFile)['keep.example.com'], `http://127.0.0.1:${live.port}`, 'r0 serves while r1 is pending')

  t.equal(await daemon.stop('SIGKILL'), 'SIGKILL')
  t.equal((await ghostCreate).code, 1, 'the interrupted create failed for its client')
  t.equal((await keepRebuild).code, 1)

  // The database as the crash left it: whole transactions only.
  const raw = new DatabaseSync(join(dir, 'data', 'registry.sqlite'))
  t.equal((raw.prepare('PRAGMA integrity_check').get() as { integrity_check: string }).integrity_check, 'ok')
  t.same(raw.prepare('SELECT vm, number, state FROM revisions ORDER BY vm, number').all().map((r) => ({ ...r })), [
    { vm: 'ghost', number: 0, state: 'pending' },
    { vm: 'keep', number: 0, state: 'active' },
    { vm: 'keep', number: 1, state: 'pending' },
    { vm: 'moving', number: 0, state: 'active' }
  ])
  raw.close()
  // Someone (or something) mangled the route file meanwhile: the daemon did not
  // write that, so it refuses to start rather than overwrite it...
  writeFileSync(routesFile, '{"version": 1, "rou')
  const refused = await runCli(['daemon', '--config', configFile])
  t.equal(refused.code, 2, 'a route file the daemon did not write stops the start')
  t.match(refused.stderr, `the route file ${routesFile} was not written by this daemon (it holds text that is not a valid route file)`)
  t.equal(readFileSync(routesFile, 'utf8'), '{"version": 1, "rou', 'left as it was')
  // ...until the operator moves it away.
  renameSync(routesFile, `${routesFile}.mangled`)

  daemon = await startDaemonProcess(t, configFile)
  const listed = JSON.parse((await runVm(['vm', 'list', '--json'], env())).stdout) as { name: string, revision: number, revisions: { state: string }[] }[]
  t.same(listed.map((v) => [v.name, v.revision, v.revisions.map((r) => r.state)]), [['keep', 0, ['active']], ['moving', 0, ['active']]],
    'the half-made VM is gone, the pending rebuild dropped, r0 kept')
  t.same(routeTargets(routesFile), {
    'keep.example.com': `http://127.0.0.1:${live.port}`,
    'moving.example.com': `http://127.0.0.1:${live.port}`
  }, 'the route file was rewritten from the registry')
  t.ok(daemon.logs.some((l) => l.msg === 'cleaning up a revision left unfinished by a crash' && l.vm === 'ghost'))

  // 3. A rebuild that switched and is draining before it retires r0: slow drain.
  const live2 = await startBackend(t)
  writeFileSync(configFile, readFileSync(configFile, 'utf8').replace('retire_drain = "0s"', 'retire_drain = "60s"'))
  await daemon.stop('SIGTERM')
  daemon = await startDaemonProcess(t, configFile)
  const from3 = daemon.logs.length
  const moved = file('moved', `name = "moving"\naddress = "127.0.0.1"\ndomains = ["moving.example.com->${live2.port}"]\n`)
  const switching = runVm(['vm', 'rebuild', 'moving', moved], env())
  await daemon.waitForLog((l) => l.msg === 'VM revision active' && l.vm === 'moving' && l.revision === 1, 10_000, from3)
  await daemon.waitForLog((l) => l.msg === 'route file written', 10_000, from3)
  t.equal(routeTargets(routesFile)['moving.example.com'], `http://127.0.0.1:${live2.port}`, 'r1 serves during the drain')
  await daemon.stop('SIGKILL')
  await switching

  daemon = await startDaemonProcess(t, configFile)
  const moving2 = JSON.parse((await runVm(['vm', 'info', 'moving', '--json'], env())).stdout)
  t.same(moving2.revisions.map((r: { number: number, state: string }) => [r.number, r.state]), [[1, 'active']], 'the retiring r0 was cleaned up at start')
  t.equal(routeTargets(routesFile)['moving.example.com'], `http://127.0.0.1:${live2.port}`)
})
