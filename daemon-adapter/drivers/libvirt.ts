/**
 * @module daemon-adapter/drivers/libvirt
 * The `libvirt` driver. Each revision is its own libvirt domain `vmfront-<vm>-r<n>`
 * with its own disk volume (a qcow2 overlay of the VM's `seed`, or empty), its own
 * MAC, and an IP from `[libvirt] ip_range` pinned by a static DHCP host entry on the
 * network. Provisioning and teardown are each one virsh batch (see ./virsh.ts).
 */
import { randomBytes } from 'node:crypto'
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { AdapterError } from '../errors.ts'
import type { LibvirtConfig } from '../config.ts'
import type { Logger } from '../log.ts'
import type { Revision, Taken } from '../registry.ts'
import type { VmDefinition } from '../vm-definition.ts'
import type { Driver } from './driver.ts'
import { dhcpHostXml, domainXml } from './domain-xml.ts'
import type { VirshCommand, VirshRunner } from './virsh.ts'

export interface LibvirtDriverOptions {
  readonly config: LibvirtConfig
  readonly runner: VirshRunner
  /** Where the generated domain XML files are kept (one per live revision). */
  readonly workDir: string
  readonly log: Logger
  /** Random bytes for MACs (injectable for tests). */
  readonly random?: (size: number) => Buffer
}

/** The commands that create and start a revision, then report its state. */
export interface LibvirtPlan {
  readonly provision: readonly VirshCommand[]
  readonly teardown: readonly VirshCommand[]
  /** The domain XML that `provision` defines from `xmlFile`. */
  readonly xml: string
  readonly xmlFile: string
}

function ipToNumber (ip: string): number {
  return ip.split('.').reduce((acc, part) => acc * 256 + Number(part), 0)
}

function numberToIp (n: number): string {
  return [24, 16, 8, 0].map((shift) => (n >>> shift) & 255).join('.')
}

/** The libvirt domain name of revision `number` of `vm`. */
export function libvirtHandle (vm: string, number: number): string {
  return `vmfront-${vm}-r${number}`
}

/**
 * Error lines that mean "already gone", which teardown accepts so that it can be run
 * again after a crash. Each command's failure prints a generic line and a reason line;
 * both are listed, and only for the names this revision uses.
 */
function teardownTolerance (handle: string, volume: string): RegExp[] {
  const h = handle.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
  const v = volume.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
  return [
    new RegExp(`^error: failed to get domain '${h}'`),
    new RegExp(`^error: Domain not found`),
    new RegExp(`^error: Failed to destroy domain '${h}'`),
    /^error: Requested operation is not valid: domain is not running/,
    new RegExp(`^error: failed to get vol '${v}'`),
    /^error: Storage volume not found/,
    /^error: Failed to update network /,
    /^error: Requested operation is not valid: couldn't locate a matching dhcp host entry/
  ]
}

/** Creates the libvirt driver. */
export function createLibvirtDriver (options: LibvirtDriverOptions): Driver & { plan (revision: Revision): LibvirtPlan } {
  const { config, runner, workDir, log } = options
  const random = options.random ?? randomBytes
  const first = ipToNumber(config.ipRange.first)
  const last = ipToNumber(config.ipRange.last)

  function plan (revision: Revision): LibvirtPlan {
    const settings = revision.definition.libvirt
    if (settings === undefined || revision.ip === undefined || revision.mac === undefined) {
      throw new AdapterError('DRIVER_FAILED', `revision r${revision.number} of "${revision.vm}" was not placed by the libvirt driver`)
    }
    const handle = revision.handle
    const volume = `${handle}.qcow2`
    const xmlFile = join(workDir, `${handle}.xml`)
    const xml = domainXml({
      handle,
      vm: revision.vm,
      revision: revision.number,
      domainType: config.domainType,
      cpus: settings.cpus,
      ramMiB: settings.ramMiB,
      pool: config.pool,
      volume,
      network: settings.network,
      mac: revision.mac
    })
    const host = dhcpHostXml(revision.mac, handle.replaceAll('_', '-'), revision.ip)
    const createVolume = ['vol-create-as', config.pool, volume, `${settings.diskMiB}M`, '--format', 'qcow2']
    if (settings.seed !== '') createVolume.push('--backing-vol', settings.seed, '--backing-vol-format', 'qcow2')
    return {
      xml,
      xmlFile,
      provision: [
        createVolume,
        ['net-update', settings.network, 'add', 'ip-dhcp-host', host, '--live', '--config'],
        ['define', xmlFile, '--validate'],
        ['start', handle],
        ['domstate', handle]
      ],
      teardown: [
        ['destroy', handle],
        ['undefine', handle],
        ['vol-delete', volume, '--pool', config.pool],
        ['net-update', settings.network, 'delete', 'ip-dhcp-host', host, '--live', '--config']
      ]
    }
  }

  async function teardown (revision: Revision): Promise<void> {
    const p = plan(revision)
    const result = await runner.run(p.teardown, { tolerate: teardownTolerance(revision.handle, `${revision.handle}.qcow2`) })
    if (result.tolerated.length > 0) log.debug('libvirt teardown: parts were already gone', { vm: revision.vm, revision: revision.number, virsh: result.tolerated })
    rmSync(p.xmlFile, { force: true })
  }

  return {
    name: 'libvirt',
    plan,

    place (definition: VmDefinition, number: number, taken: Taken) {
      let ip: string | undefined
      for (let n = first; n <= last; n++) {
        const candidate = numberToIp(n)
        if (!taken.ips.has(candidate)) {
          ip = candidate
          break
        }
      }
      if (ip === undefined) {
        throw new AdapterError('DRIVER_FAILED', `no free IP left in libvirt.ip_range ${config.ipRange.first}-${config.ipRange.last}`)
      }
      let mac: string
      do {
        // 52:54:00 is the locally administered prefix QEMU/libvirt use.
        mac = ['52', '54', '00', ...[...random(3)].map((b) => b.toString(16).padStart(2, '0'))].join(':')
      } while (taken.macs.has(mac))
      return { address: ip, ip, mac, handle: libvirtHandle(definition.name, number) }
    },

    async provision (revision) {
      const p = plan(revision)
      mkdirSync(workDir, { recursive: true, mode: 0o700 })
      writeFileSync(p.xmlFile, p.xml, { mode: 0o600 })
      let state: string
      try {
        const result = await runner.run(p.provision)
        state = result.stdout.trim().split('\n').at(-1)?.trim() ?? ''
      } catch (err) {
        log.warn('libvirt provision failed; undoing', { vm: revision.vm, revision: revision.number, err })
        await teardown(revision).catch((undo: unknown) => {
          log.error('libvirt undo failed; clean up by hand', { vm: revision.vm, handle: revision.handle, err: undo })
        })
        throw err
      }
      if (state !== 'running') {
        await teardown(revision).catch(() => {})
        throw new AdapterError('DRIVER_FAILED', `libvirt domain ${revision.handle} is "${state}" after start, not "running"`)
      }
    },

    teardown
  }
}
