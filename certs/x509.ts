/**
 * @module certs/x509
 * Certificate and key helpers: parse a PEM chain into the facts the manager needs (validity,
 * names, issuer, serial, ARI certificate ID), check a key against a certificate, match names,
 * and generate keys and CSRs for orders.
 */
import { createPrivateKey, generateKeyPair, X509Certificate } from 'node:crypto'
import { promisify } from 'node:util'
import type * as acmeTypes from 'acme-client'
import { ariCertId } from './ari.ts'
import { CertError, errorMessage } from './errors.ts'

/** Key types for certificates ordered via ACME. EC P-256 is the default (smaller, faster handshakes). */
export type KeyType = 'ec-p256' | 'rsa-2048'
export const KEY_TYPES: readonly KeyType[] = ['ec-p256', 'rsa-2048']

/** What the manager needs to know about a certificate chain. */
export interface CertInfo {
  readonly notBefore: Date
  readonly notAfter: Date
  /** Serial number, hex of its DER content octets. */
  readonly serial: string
  /** Issuer common name (or the full issuer name when it has none). */
  readonly issuer: string
  /** DNS subjectAltNames, lower-case. */
  readonly dnsNames: readonly string[]
  /** RFC 9773 certificate identifier, when the certificate has an Authority Key Identifier. */
  readonly ariCertId: string | undefined
  /** `ec`, `rsa`, ... (node:crypto asymmetricKeyType of the leaf's public key). */
  readonly keyType: string
}

/** A parsed chain: leaf first, as PEM, with its facts. */
export interface ParsedChain {
  readonly chainPem: string
  readonly leaf: X509Certificate
  readonly info: CertInfo
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g

/** The PEM certificate blocks of `pem`, in order. */
export function splitPemCertificates (pem: string): string[] {
  return pem.match(PEM_CERT) ?? []
}

/** One DER TLV: its tag octet, and where its content lies in the buffer. */
interface Tlv { readonly tag: number, readonly start: number, readonly end: number }

/**
 * The TLV at `at` (DER: single-octet tags, definite lengths of at most 4 octets, which is all an
 * X.509 certificate uses).
 * @throws Error when the encoding runs past `limit` or uses a form DER does not allow
 */
function readTlv (der: Buffer, at: number, limit: number): Tlv {
  if (at + 2 > limit) throw new Error('truncated DER')
  const tag = der[at]
  if ((tag & 0x1f) === 0x1f) throw new Error('multi-octet DER tag')
  let len = der[at + 1]
  let start = at + 2
  if (len >= 0x80) {
    const octets = len & 0x7f
    if (octets === 0 || octets > 4 || start + octets > limit) throw new Error('bad DER length')
    len = 0
    for (let i = 0; i < octets; i++) len = len * 256 + der[start + i]
    start += octets
  }
  if (start + len > limit) throw new Error('truncated DER')
  return { tag, start, end: start + len }
}

/** The TLVs directly inside a constructed `node`. */
function childrenOf (der: Buffer, node: Tlv): Tlv[] {
  const out: Tlv[] = []
  for (let at = node.start; at < node.end;) {
    const child = readTlv(der, at, node.end)
    out.push(child)
    at = child.end
  }
  return out
}

/** DER of the OID 2.5.29.35 (authorityKeyIdentifier). */
const OID_AKI = Buffer.from([0x55, 0x1d, 0x23])

/**
 * Reads the serial's DER content octets and the Authority Key Identifier's keyIdentifier from a
 * DER certificate. node:crypto exposes neither in DER form (its serialNumber drops leading zero
 * octets, which RFC 9773 requires), so this walks the DER directly: Certificate →
 * tbsCertificate → serialNumber / [3] extensions. (A hand walk rather than node-forge: workers
 * parse certificates, and forge alone adds megabytes to each.)
 */
export function readSerialAndAki (der: Buffer): { serial: Buffer, aki: Buffer | undefined } {
  const cert = readTlv(der, 0, der.length)
  const tbsNode = childrenOf(der, cert)[0]
  if (tbsNode === undefined) throw new Error('certificate has no tbsCertificate')
  const tbs = childrenOf(der, tbsNode)
  const hasVersion = tbs[0]?.tag === 0xa0 // [0] EXPLICIT version
  const serialNode = tbs[hasVersion ? 1 : 0]
  if (serialNode === undefined || serialNode.tag !== 0x02) throw new Error('certificate has no serial number')
  const serial = Buffer.from(der.subarray(serialNode.start, serialNode.end))
  const extsWrapper = tbs.find((n) => n.tag === 0xa3) // [3] EXPLICIT extensions
  let aki: Buffer | undefined
  const exts = extsWrapper === undefined ? [] : childrenOf(der, extsWrapper)
  for (const ext of exts[0] === undefined ? [] : childrenOf(der, exts[0])) {
    const parts = childrenOf(der, ext)
    const oid = parts[0]
    if (oid === undefined || oid.tag !== 0x06 || !der.subarray(oid.start, oid.end).equals(OID_AKI)) continue
    const octets = parts[parts.length - 1]
    if (octets === undefined || octets.tag !== 0x04) break
    const akiSeq = readTlv(der, octets.start, octets.end)
    const keyId = childrenOf(der, akiSeq).find((n) => n.tag === 0x80) // [0] IMPLICIT keyIdentifier
    if (keyId !== undefined) aki = Buffer.from(der.subarray(keyId.start, keyId.end))
  }
  return { serial, aki }
}

function commonNameOf (dn: string): string {
  const cn = dn.split('\n').find((l) => l.startsWith('CN='))
  return cn !== undefined ? cn.slice(3) : dn.split('\n').join(', ')
}

function dnsNamesOf (leaf: X509Certificate): string[] {
  const san = leaf.subjectAltName ?? ''
  return san.split(', ').filter((s) => s.startsWith('DNS:')).map((s) => s.slice(4).replace(/^"|"$/g, '').toLowerCase())
}

/**
 * Parses a PEM chain (leaf first).
 * @throws CertError CERTS_PEM_INVALID when there is no certificate or the leaf cannot be parsed
 */
export function parseCertificateChain (pem: string): ParsedChain {
  const blocks = splitPemCertificates(pem)
  if (blocks.length === 0) throw new CertError('CERTS_PEM_INVALID', 'no PEM certificate found')
  try {
    const leaf = new X509Certificate(blocks[0])
    const { serial, aki } = readSerialAndAki(leaf.raw)
    const info: CertInfo = {
      notBefore: new Date(leaf.validFrom),
      notAfter: new Date(leaf.validTo),
      serial: serial.toString('hex'),
      issuer: commonNameOf(leaf.issuer),
      dnsNames: dnsNamesOf(leaf),
      ariCertId: aki === undefined ? undefined : ariCertId(aki, serial),
      keyType: leaf.publicKey.asymmetricKeyType ?? 'unknown'
    }
    return { chainPem: blocks.join('\n') + '\n', leaf, info }
  } catch (err) {
    throw new CertError('CERTS_PEM_INVALID', `unparseable certificate: ${errorMessage(err)}`, { cause: err })
  }
}

/**
 * Whether `keyPem` is the private key of `leaf`.
 * @throws CertError CERTS_PEM_INVALID when the key cannot be parsed
 */
export function keyMatchesCertificate (leaf: X509Certificate, keyPem: string): boolean {
  let key
  try {
    key = createPrivateKey(keyPem)
  } catch (err) {
    throw new CertError('CERTS_PEM_INVALID', `unparseable private key: ${errorMessage(err)}`, { cause: err })
  }
  return leaf.checkPrivateKey(key)
}

/**
 * Whether a certificate with these DNS names serves `name`: an exact match, or a `*.` wildcard
 * covering exactly one leftmost label (RFC 6125 §6.4.3). A wildcard `name` (from
 * extra_certs_file) must be listed as such.
 */
export function certCoversName (dnsNames: readonly string[], name: string): boolean {
  const n = name.toLowerCase()
  if (dnsNames.includes(n)) return true
  if (n.startsWith('*.')) return false
  const dot = n.indexOf('.')
  return dot > 0 && dnsNames.includes('*' + n.slice(dot))
}

const generateKeyPairAsync = promisify(generateKeyPair)

/** A new private key (PKCS#8 PEM) of `type`, generated off the event loop. */
export async function generatePrivateKeyPem (type: KeyType): Promise<string> {
  const pair = type === 'rsa-2048'
    ? await generateKeyPairAsync('rsa', { modulusLength: 2048 })
    : await generateKeyPairAsync('ec', { namedCurve: 'P-256' })
  return pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
}

/**
 * A CSR (PEM) for `domain` signed by `keyPem`. The name always goes in the SAN; the CN too when it
 * fits the 64-character X.520 limit (CAs reject longer CNs, and modern profiles ignore CN).
 */
export async function createCsrPem (domain: string, keyPem: string): Promise<string> {
  const names = domain.length <= 64 ? { commonName: domain, altNames: [domain] } : { altNames: [domain] }
  // Loaded on first use (see acme-issuer.ts).
  const acme: typeof acmeTypes = await import('acme-client')
  const [, csr] = await acme.crypto.createCsr(names, keyPem)
  return csr.toString()
}
