/**
 * @module daemon-adapter/publisher
 * Keeps the proxy's route file true to the registry: after a change it renders the
 * route table of the active revisions, writes it atomically when it differs from what
 * was last written, and asks the notifier for a (coalesced) SIGHUP.
 */
import type { Logger } from './log.ts'
import type { ProxyNotifier, SignalOutcome } from './notify.ts'
import type { Registry } from './registry.ts'
import { removeStaleTempFiles, renderRouteFile, routesFor, writeFileAtomic } from './route-writer.ts'

/** What publishing did, for the API answer. */
export interface PublishReport {
  /** Routes in the file now. */
  readonly routes: number
  /** False when the table was unchanged (nothing written, no signal). */
  readonly written: boolean
  /** The reload signal's outcome; `unchanged` when none was needed. */
  readonly signal: SignalOutcome | { readonly status: 'unchanged' }
}

export interface Publisher {
  /**
   * Writes the route file if the table changed (always when `force`), then waits for
   * the coalesced SIGHUP. The file is written before this returns its promise, so the
   * file matches the registry as soon as the call is made.
   * @throws AdapterError ROUTES_INVALID, ROUTES_WRITE_FAILED
   */
  publish (options?: { force?: boolean }): Promise<PublishReport>
}

export function createPublisher (options: { registry: Registry, routesFile: string, notifier: ProxyNotifier, log: Logger }): Publisher {
  const { registry, routesFile, notifier, log } = options
  let last: string | undefined
  return {
    publish ({ force = false } = {}) {
      const routes = routesFor(registry.activeRevisions())
      let text: string
      try {
        text = renderRouteFile(routes)
        if (!force && text === last) return Promise.resolve({ routes: routes.length, written: false, signal: { status: 'unchanged' } })
        if (force) {
          const stale = removeStaleTempFiles(routesFile)
          if (stale.length > 0) log.warn('removed temp files of an interrupted route write', { files: stale })
        }
        writeFileAtomic(routesFile, text)
      } catch (err) {
        return Promise.reject(err)
      }
      last = text
      log.info('route file written', { file: routesFile, routes: routes.length })
      return notifier.request().then((signal) => ({ routes: routes.length, written: true, signal }))
    }
  }
}
