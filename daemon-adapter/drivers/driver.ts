/**
 * @module daemon-adapter/drivers/driver
 * The hypervisor seam: what the VM manager needs from a driver. One implementation per
 * hypervisor (`static`, `libvirt`); the manager never knows which one it holds.
 */
import type { Placement, Revision, Taken } from '../registry.ts'
import type { VmDefinition } from '../vm-definition.ts'

/** A hypervisor driver. */
export interface Driver {
  readonly name: string
  /**
   * Chooses where revision `number` of a VM runs (address, and for libvirt its IP,
   * MAC and domain name). Pure and synchronous: it runs inside the registry
   * transaction that records the revision, so two revisions never get one IP.
   */
  place (definition: VmDefinition, number: number, taken: Taken): Placement
  /**
   * Creates and starts the revision; resolves once the hypervisor reports it running.
   * On failure it has undone what it did, as far as it could.
   * @throws AdapterError DRIVER_FAILED, DRIVER_TIMEOUT
   */
  provision (revision: Revision): Promise<void>
  /**
   * Stops and removes the revision and everything it was given. Idempotent: a
   * revision that is already (partly) gone is not an error.
   * @throws AdapterError DRIVER_FAILED, DRIVER_TIMEOUT
   */
  teardown (revision: Revision): Promise<void>
}
