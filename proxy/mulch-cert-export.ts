/**
 * @module proxy/mulch-cert-export
 * Keeps `data_dir/certs/<name>` for each of `acme.extra_domains` (mulchd's
 * `listen_https_domain`): the private key then the chain, PEM, mode 0600, the file
 * mulch-proxy's autocert cache held and mulchd's HTTPS API reads (and re-reads when
 * its mtime changes). mulchd asks for the certificate by calling https://<name>/
 * through the proxy, which orders it on demand; this module writes each new one.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describeError, writeFileAtomic, type CertManager } from '../certs/index.ts'
import type { Logger } from './log.ts'

export interface MulchCertExport {
  /** Writes the files of every name whose certificate is served now. */
  syncAll (): Promise<void>
  stop (): void
}

export function createMulchCertExport (options: { certs: CertManager, dataDir: string, domains: readonly string[], logger: Logger }): MulchCertExport {
  const { certs, dataDir, logger } = options
  const domains = new Set(options.domains)
  const written = new Map<string, string>()

  async function sync (domain: string): Promise<void> {
    const pem = certs.servedPem(domain)
    if (pem === undefined) return
    const content = pem.keyPem.trimEnd() + '\n' + pem.chainPem.trimEnd() + '\n'
    // A reload, a maintenance pass or a restart re-announces the same certificate:
    // leave the file alone, since mulchd re-reads it whenever its mtime changes.
    if (written.get(domain) === content) return
    const file = join(dataDir, 'certs', domain)
    if (await readFile(file, 'utf8').catch(() => undefined) === content) {
      written.set(domain, content)
      return
    }
    try {
      await writeFileAtomic(file, content, 0o600)
      written.set(domain, content)
      logger.info('certificate written for mulchd', { domain, file, source: pem.source })
    } catch (err) {
      logger.error('cannot write the certificate for mulchd', { domain, file, reason: describeError(err) })
    }
  }

  const onCertificate = (e: { domain: string, removed: boolean }): void => {
    if (!e.removed && domains.has(e.domain)) void sync(e.domain)
  }
  if (domains.size > 0) certs.on('certificate', onCertificate)

  return {
    async syncAll (): Promise<void> {
      for (const domain of domains) await sync(domain)
    },
    stop (): void {
      certs.off('certificate', onCertificate)
    }
  }
}
