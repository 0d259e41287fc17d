/**
 * @module daemon-adapter/protocol
 * Names shared by the API and its client.
 */

/** The header the client uses to name the VM file, so that errors can name it. */
export const FILE_HEADER = 'x-vmfront-file'

/** Environment variables the `vm` client reads when `--url` / `--key` are not given. */
export const URL_ENV = 'VMFRONT_URL'
export const KEY_ENV = 'VMFRONT_KEY'
