/**
 * @module daemon-adapter/publisher
 * Keeps the proxy's route file true to the registry: after a change it renders the
 * route table of the active revisions, writes it atomically when it differs from what
 * was last written, and asks the notifier for a (coalesced) SIGHUP. It never writes
 * over a file it did not write (route-ownership.ts): the SHA-256 of each write is
 * recorded in the registry, and a file that matches neither it nor "no routes" is
 * left alone with an error that says how to adopt it.
 */
import type { Logger } from './log.ts'
import type { ProxyNotifier, SignalOutcome } from './notify.ts'
import type { Registry } from './registry.ts'
import { foreignRouteFileError, inspectRouteFile, sha256Hex } from './route-ownership.ts'
import { portsFor, removeStaleTempFiles, renderRouteFile, routesFor, writeFileAtomic } from './route-writer.ts'

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
   * At start, before anything else touches the route file: throws when the file is
   * one the daemon may not overwrite.
   * @throws AdapterError ROUTES_FOREIGN (naming the file and `vmfront vm import-routes`), ROUTES_INVALID
   */
  checkOwnership (): void
  /**
   * Writes the route file if the table changed (always when `force`), then waits for
   * the coalesced SIGHUP. The file is written before this returns its promise, so the
   * file matches the registry as soon as the call is made.
   * @throws AdapterError ROUTES_INVALID, ROUTES_WRITE_FAILED, ROUTES_FOREIGN (the file is left as it is)
   */
  publish (options?: { force?: boolean }): Promise<PublishReport>
}

export function createPublisher (options: { registry: Registry, routesFile: string, notifier: ProxyNotifier, log: Logger, configFile?: string, vmGateway?: string }): Publisher {
  const { registry, routesFile, notifier, log, configFile } = options
  const ports = (): ReturnType<typeof portsFor> => portsFor(registry.activeRevisions(), options.vmGateway ?? '')
  let last: string | undefined

  function check (text: string, when: 'start' | 'running'): void {
    const found = inspectRouteFile(routesFile, registry.routesFileHash(), text)
    if (found.kind === 'foreign') throw foreignRouteFileError(routesFile, found.detail, configFile, when)
    if (found.kind === 'no-routes' || found.kind === 'same-routes') log.info('route file adopted', { file: routesFile, found: found.kind })
  }

  return {
    checkOwnership () {
      check(renderRouteFile(routesFor(registry.activeRevisions()), ports()), 'start')
    },
    publish ({ force = false } = {}) {
      const routes = routesFor(registry.activeRevisions())
      let text: string
      try {
        text = renderRouteFile(routes, ports())
        if (!force && text === last) return Promise.resolve({ routes: routes.length, written: false, signal: { status: 'unchanged' } })
        check(text, 'running')
        if (force) {
          const stale = removeStaleTempFiles(routesFile)
          if (stale.length > 0) log.warn('removed temp files of an interrupted route write', { files: stale })
        }
        writeFileAtomic(routesFile, text)
        // After the rename: a crash in between leaves a file equal to what the
        // registry renders, which the next start accepts as `same-routes`.
        registry.setRoutesFileHash(sha256Hex(text))
      } catch (err) {
        if ((err as { code?: unknown }).code === 'ROUTES_FOREIGN') log.error('route file not written', { file: routesFile, reason: (err as Error).message })
        return Promise.reject(err)
      }
      last = text
      log.info('route file written', { file: routesFile, routes: routes.length })
      return notifier.request().then((signal) => ({ routes: routes.length, written: true, signal }))
    }
  }
}
