// A route-file read that never returns (a hung file system) fails its reload after readTimeoutMs,
// is never started twice, and later reloads work once it returns (issue 9 point 4), in process.
import t from 'tap'
import { createServedRoutes } from '../../proxy/served-routes.ts'
import { createRouteReloader } from '../../proxy/reload.ts'
import { createMetrics } from '../../proxy/metrics.ts'
import { silentLogger } from '../../proxy/log.ts'

t.test('a hung read fails the reload in time, holds no second read, and releases the reloader when it returns', async (t) => {
  const good = JSON.stringify({ version: 1, routes: [{ domain: 'a.test', target: 'http://10.0.0.1:80' }] })
  let reads = 0
  // the reloader's timer does not hold the process open (a proxy's listeners do): this test must
  const keepAlive = setInterval(() => {}, 1000)
  t.teardown(() => { clearInterval(keepAlive) })
  let hang: ((text: string) => void) | undefined
  const logger = silentLogger()
  const metrics = createMetrics()
  const servedRoutes = createServedRoutes({ logger, metrics })
  const holder = servedRoutes.holder
  const reloader = createRouteReloader({
    file: '/routes.json',
    served: servedRoutes,
    logger,
    metrics,
    hasProfile: () => true,
    readTimeoutMs: 100,
    readFile: async () => {
      reads++
      if (reads === 2) return await new Promise<string>((resolve) => { hang = resolve })
      return good
    }
  })
  t.match(await reloader.reload('start'), { result: 'success', routes: 1 })
  const served = holder.router

  const started = Date.now()
  const timedOut = await reloader.reload('SIGHUP')
  t.ok(Date.now() - started < 2000, `given up after ${Date.now() - started} ms`)
  t.match(timedOut, { result: 'failure', errors: [{ path: '$', message: 'could not be read within 0.1 s (a hung file system?): gave up' }] })
  t.equal(holder.router, served, 'the table in service is kept')
  t.equal(reloader.readPending(), true, 'the hung read is still known')

  const refused = await reloader.reload('SIGHUP')
  t.match(refused, { result: 'failure', errors: [{ message: /^has not finished being read since \d+ s \(a hung file system\?\): not read again until that read returns$/ }] })
  t.equal(reads, 2, 'no second read piled up behind the hung one')

  hang?.(good)
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(reloader.readPending(), false, 'released once it returns')
  t.match(await reloader.reload('SIGHUP'), { result: 'success', routes: 1 }, 'and reloads work again')
  t.equal(reads, 3)
})
