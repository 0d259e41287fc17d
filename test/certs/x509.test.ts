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
