// Certificate facts read by the manager: names, validity, serial (leading zero kept) and AKI.
import { X509Certificate } from 'node:crypto'
import t from 'tap'
import { certCoversName, keyMatchesCertificate, parseCertificateChain, readSerialAndAki, splitPemCertificates } from '../../certs/x509.ts'
import { issueTestCert } from '../helpers/pebble.ts'
import forge from 'node-forge'

t.test('certCoversName follows RFC 6125 wildcard rules', async (t) => {
  const cases: Array<[string[], string, boolean]> = [
    [['a.test'], 'a.test', true], [['a.test'], 'A.TEST', true], [['a.test'], 'b.test', false],
    [['*.a.test'], 'x.a.test', true], [['*.a.test'], 'a.test', false], [['*.a.test'], 'y.x.a.test', false],
    [['*.a.test'], '*.a.test', true], [['x.a.test'], '*.a.test', false], [[], 'a.test', false]
  ]
  for (const [names, name, want] of cases) t.equal(certCoversName(names, name), want, `${JSON.stringify(names)} ∋ ${name}`)
})

t.test('parseCertificateChain reads validity, names, issuer, serial and ARI ID', async (t) => {
  const ca = issueTestCert({ isCa: true, commonName: 'Test CA' })
  const leaf = issueTestCert({ issuer: ca, dnsNames: ['a.test', 'B.test'], notBefore: new Date('2026-01-01T00:00:00Z'), notAfter: new Date('2026-02-01T00:00:00Z') })
  const chain = parseCertificateChain(leaf.certPem + '\n' + ca.certPem)
  t.equal(splitPemCertificates(chain.chainPem).length, 2, 'chain kept, leaf first')
  t.same(chain.info.dnsNames, ['a.test', 'b.test'])
  t.equal(chain.info.issuer, 'Test CA')
  t.equal(chain.info.notBefore.toISOString(), '2026-01-01T00:00:00.000Z')
  t.equal(chain.info.notAfter.toISOString(), '2026-02-01T00:00:00.000Z')
  t.equal(chain.info.keyType, 'rsa')
  // Our test CA's serials start with 0x01; the ID's serial half must equal the DER serial.
  const serial = new X509Certificate(leaf.certPem).serialNumber.toLowerCase()
  t.equal(chain.info.serial.replace(/^0+/, ''), serial.replace(/^0+/, ''))
  const akiHex = forge.pki.certificateFromPem(ca.certPem).generateSubjectKeyIdentifier().toHex()
  t.equal(chain.info.ariCertId, `${Buffer.from(akiHex, 'hex').toString('base64url')}.${Buffer.from(chain.info.serial, 'hex').toString('base64url')}`)
  t.ok(keyMatchesCertificate(chain.leaf, leaf.keyPem))
  t.notOk(keyMatchesCertificate(chain.leaf, ca.keyPem))
  t.throws(() => keyMatchesCertificate(chain.leaf, 'nope'), { code: 'CERTS_PEM_INVALID' })
  t.throws(() => parseCertificateChain('nothing here'), { code: 'CERTS_PEM_INVALID' })
  t.throws(() => parseCertificateChain('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----'), { code: 'CERTS_PEM_INVALID' })
})

t.test('a serial with the high bit set keeps its leading zero octet (RFC 9773 needs DER content)', async (t) => {
  const key = forge.pki.rsa.generateKeyPair({ bits: 1024, e: 0x10001 })
  const cert = forge.pki.createCertificate()
  cert.publicKey = key.publicKey
  cert.serialNumber = '00876543210a'
  cert.validity.notBefore = new Date()
  cert.validity.notAfter = new Date(Date.now() + 86400_000)
  cert.setSubject([{ name: 'commonName', value: 'x' }])
  cert.setIssuer([{ name: 'commonName', value: 'x' }])
  cert.sign(key.privateKey, forge.md.sha256.create())
  const der = Buffer.from(forge.asn1.toDer(forge.pki.certificateToAsn1(cert)).getBytes(), 'binary')
  const { serial, aki } = readSerialAndAki(der)
  t.equal(serial.toString('hex'), '00876543210a')
  t.equal(aki, undefined, 'no AKI extension: no ARI ID')
})

// readSerialAndAki walks the DER by hand (workers must not load node-forge): it must read what
// forge's ASN.1 parser reads, and refuse what is cut short.
function forgeSerialAndAki (der: Buffer): { serial: string, aki: string | undefined } {
  const kids = (n: forge.asn1.Asn1 | undefined): forge.asn1.Asn1[] => Array.isArray(n?.value) ? n.value : []
  const tbs = kids(kids(forge.asn1.fromDer(forge.util.createBuffer(der.toString('binary'))))[0])
  const serial = Buffer.from(tbs[tbs[0].type === 0 ? 1 : 0].value as string, 'binary').toString('hex')
  let aki: string | undefined
  for (const ext of kids(kids(tbs.find((n) => n.tagClass === forge.asn1.Class.CONTEXT_SPECIFIC && n.type === 3))[0])) {
    const parts = kids(ext)
    if (forge.asn1.derToOid(parts[0].value as string) !== '2.5.29.35') continue
    const keyId = kids(forge.asn1.fromDer(forge.util.createBuffer(parts[parts.length - 1].value as string))).find((n) => n.type === 0)
    aki = Buffer.from(keyId?.value as string, 'binary').toString('hex')
  }
  return { serial, aki }
}

t.test('the DER walk reads what forge reads, and refuses a truncated certificate', async (t) => {
  const ca = issueTestCert({ isCa: true, commonName: 'Walk CA' })
  const leaf = issueTestCert({ issuer: ca, dnsNames: ['walk.test'] })
  for (const pem of [ca.certPem, leaf.certPem]) {
    const der = new X509Certificate(pem).raw
    const ours = readSerialAndAki(der)
    t.same({ serial: ours.serial.toString('hex'), aki: ours.aki?.toString('hex') }, forgeSerialAndAki(der))
  }
  t.ok(readSerialAndAki(new X509Certificate(leaf.certPem).raw).aki !== undefined, 'the leaf has an AKI')
  const der = new X509Certificate(leaf.certPem).raw
  for (const cut of [1, 3, 10, 200, der.length - 1]) t.throws(() => readSerialAndAki(der.subarray(0, cut)), `cut at ${cut}`)
})
