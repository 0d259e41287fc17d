/**
 * When the daemon may overwrite the route file (daemon-adapter/route-ownership.ts):
 * what it wrote (hash recorded), nothing, no routes, or exactly the routes it is
 * about to write. Everything else is foreign, including a FIFO, which must not block.
 */
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { inspectRouteFile, sha256Hex } from '../../daemon-adapter/route-ownership.ts'
import { renderRouteFile } from '../../daemon-adapter/route-writer.ts'
import { tempDir } from './daemon-process.ts'

const NEXT = renderRouteFile([{ domain: 'a.test', target: 'http://10.0.0.1:80', vm: 'a', redirect_to_https: true }])

t.test('what the daemon may overwrite, and what it may not', async (t) => {
  const dir = tempDir(t)
  const file = join(dir, 'routes.json')
  const cases: [string, string | undefined, string | undefined, unknown][] = [
    // [what, content (undefined = absent), recorded hash, expected]
    ['absent', undefined, undefined, { kind: 'absent' }],
    ['what it wrote', 'anything at all', sha256Hex('anything at all'), { kind: 'recorded' }],
    ['an empty file', '', undefined, { kind: 'no-routes' }],
    ['whitespace', ' \n', undefined, { kind: 'no-routes' }],
    ['{}', '{}', undefined, { kind: 'no-routes' }],
    ['a v1 file with no route', '{"version":1,"routes":[]}', undefined, { kind: 'no-routes' }],
    ['the same routes written otherwise', '{"routes":[{"vm":"a","redirect_to_https":true,"target":"http://10.0.0.1","domain":"a.test"}],"version":1}', undefined, { kind: 'same-routes' }],
    ['other routes', '{"version":1,"routes":[{"domain":"b.test","target":"http://10.0.0.2:80"}]}', undefined, { kind: 'foreign', detail: 'it holds 1 route the daemon did not write' }],
    ['other routes, another hash recorded', '{"version":1,"routes":[{"domain":"b.test","target":"http://10.0.0.2:80"}]}', sha256Hex('x'), { kind: 'foreign' }],
    ['a mulch file', '{"b.test":{"Name":"b.test","DestinationHost":"10.0.0.2","DestinationPort":80}}', undefined, { kind: 'foreign', detail: 'it holds 1 route the daemon did not write' }],
    ['garbage', '{"version": 1, "rou', undefined, { kind: 'foreign', detail: 'it holds text that is not a valid route file' }],
    ['an invalid table', '{"version":1,"routes":[{"domain":"B.test","target":"http://10.0.0.2"}]}', undefined, { kind: 'foreign', detail: 'it holds text that is not a valid route file' }]
  ]
  for (const [what, content, hash, expected] of cases) {
    const path = join(dir, `${cases.findIndex((c) => c[0] === what)}.json`)
    if (content !== undefined) writeFileSync(path, content)
    t.match(inspectRouteFile(path, hash, NEXT), expected, what)
  }
  mkdirSync(file)
  t.match(inspectRouteFile(file, undefined, NEXT), { kind: 'foreign', detail: 'it is not a regular file' }, 'a directory')
})

t.test('a FIFO is foreign and is never read (a read would block)', async (t) => {
  const fifo = join(tempDir(t), 'routes.json')
  const made = spawnSync('mkfifo', [fifo])
  t.equal(made.status, 0, 'mkfifo')
  t.match(inspectRouteFile(fifo, undefined, NEXT), { kind: 'foreign', detail: 'it is not a regular file' })
})
