/**
 * @module daemon-adapter/drivers/static
 * The `static` driver: a VM is an address that already exists (managed elsewhere), so
 * provisioning and teardown have nothing to do. The embedded default.
 */
import type { Driver } from './driver.ts'

/** Creates the static driver: the revision's address is the definition's `address`. */
export function createStaticDriver (): Driver {
  return {
    name: 'static',
    place (definition, number) {
      return { address: definition.address ?? '', handle: `${definition.name}-r${number}` }
    },
    async provision () {},
    async teardown () {}
  }
}
