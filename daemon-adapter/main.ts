/**
 * @module daemon-adapter/main
 * Wires the daemon together: data directory, API keys, registry, driver, crash
 * recovery and the first route file, then the API listener. The only module that
 * starts things; `cli.ts` adds the signal handling.
 */
import { mkdirSync } from 'node:fs'
import { join, resolve } from 'node:path'
import type { Server as HttpServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createAdaptorServer } from '@hono/node-server'
import type { ServerType } from '@hono/node-server'
import { createApi } from './api.ts'
import { createKeyChecker, loadApiKeys } from './api-keys.ts'
import { createParentCheck } from './chain-check.ts'
import type { DaemonConfig } from './config.ts'
import { AdapterError } from './errors.ts'
import type { Driver } from './drivers/driver.ts'
import { createLibvirtDriver } from './drivers/libvirt.ts'
import { createStaticDriver } from './drivers/static.ts'
import { createVirshRunner } from './drivers/virsh.ts'
import type { Logger } from './log.ts'
import { createVmManager } from './manager.ts'
import { createProxyNotifier } from './notify.ts'
import { createPublisher } from './publisher.ts'
import type { PublishReport } from './publisher.ts'
import { openRegistry, REGISTRY_FILE } from './registry.ts'

/** A running daemon. */
export interface Daemon {
  /** The API's base URL (with the real port when `listen` asked for port 0). */
  readonly url: string
  /** Rewrites the route file from the registry and signals the proxy (the daemon's SIGHUP). */
  republish (): Promise<PublishReport>
  /** Stops the listener, lets running changes settle, sends a pending SIGHUP, closes the database. */
  close (): Promise<void>
}

function createDriver (config: DaemonConfig, log: Logger): Driver {
  if (config.driver === 'static') return createStaticDriver()
  const runner = createVirshRunner({ virsh: config.libvirt.virsh, uri: config.libvirt.uri, timeoutMs: config.libvirt.commandTimeoutMs })
  return createLibvirtDriver({ config: config.libvirt, runner, workDir: join(config.dataDir, 'libvirt'), log })
}

function listen (server: ServerType, host: string, port: number): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolve(server.address() as AddressInfo)
    })
  })
}

/**
 * Starts the daemon for `config`.
 * @throws AdapterError (CONFIG_*, ROUTES_*, INTERNAL for a listen failure)
 */
export async function startDaemon (config: DaemonConfig, log: Logger): Promise<Daemon> {
  try {
    mkdirSync(config.dataDir, { recursive: true, mode: 0o700 })
  } catch (err) {
    throw new AdapterError('CONFIG_UNREADABLE', `${config.file}: data_dir ${config.dataDir} cannot be created: ${(err as Error).message}`, { cause: err })
  }
  const keys = loadApiKeys(config.apiKeysFile, config.dataDir)
  if (keys.generated !== undefined) log.info('API key generated', { file: keys.generated })

  const registry = openRegistry(join(config.dataDir, REGISTRY_FILE))
  const notifier = createProxyNotifier({ pidFile: config.proxyPidFile, debounceMs: config.reloadDebounceMs, log })
  const publisher = createPublisher({ registry, routesFile: config.routesFile, notifier, log, configFile: config.file === '(defaults)' ? undefined : resolve(config.file), vmGateway: config.vmGateway })
  try {
    // Before recovery touches anything: a route file someone else wrote stops the start.
    publisher.checkOwnership()
  } catch (err) {
    registry.close()
    throw err
  }
  const manager = createVmManager({
    registry,
    driver: createDriver(config, log),
    publisher,
    parentCheck: createParentCheck(config.chain, log),
    log,
    upProbe: config.upProbe,
    upTimeoutMs: config.upTimeoutMs,
    retireDrainMs: config.retireDrainMs
  })

  let server: ServerType | undefined
  try {
    const report = await manager.recover()
    log.info('routes restored from the registry', { routes: report.routes, file: config.routesFile })
    const app = createApi({
      manager,
      keys: createKeyChecker(keys.hashes),
      parseContext: { driver: config.driver, defaultNetwork: config.libvirt.network },
      log
    })
    server = createAdaptorServer({ fetch: app.fetch, hostname: config.listen.host })
    const address = await listen(server, config.listen.host, config.listen.port)
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
    const url = `http://${host}:${address.port}`
    log.info('daemon API listening', { url, driver: config.driver, data_dir: config.dataDir })

    const running = server
    return {
      url,
      republish: () => publisher.publish({ force: true }),
      async close () {
        const closed = new Promise<void>((resolve) => { running.close(() => { resolve() }) })
        // Aborts waits for revisions coming up, so their requests answer and end.
        await manager.close()
        const http = running as HttpServer
        http.closeIdleConnections()
        const timer = setTimeout(() => { http.closeAllConnections() }, 2000)
        await closed
        clearTimeout(timer)
        await notifier.flush()
        registry.close()
        log.info('daemon stopped')
      }
    }
  } catch (err) {
    server?.close()
    await manager.close()
    registry.close()
    if (err instanceof AdapterError) throw err
    throw new AdapterError('INTERNAL', `cannot start the daemon: ${(err as Error).message}`, { cause: err })
  }
}
