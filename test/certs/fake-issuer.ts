/**
 * @module test/certs/fake-issuer
 * An in-process Issuer for manager logic tests that need no CA (backoff, precedence, disabled
 * ACME): certificates signed by a node-forge test CA. The ACME path itself is tested on Pebble.
 */
import type { Issuer, IssueRequest } from '../../certs/index.ts'
import { issueTestCert, type TestCert } from '../helpers/pebble.ts'

export interface FakeIssuer extends Issuer {
  readonly ca: TestCert
  readonly calls: IssueRequest[]
  /** When set, issue() rejects with this error. */
  fail: Error | undefined
  /** When set, issue() waits for this promise first. */
  gate: Promise<void> | undefined
  validityMs: number
}

/** Creates the fake issuer with its own CA. */
export function createFakeIssuer (): FakeIssuer {
  const ca = issueTestCert({ isCa: true, commonName: 'Fake ACME CA' })
  const issuer: FakeIssuer = {
    key: 'fake-issuer',
    ca,
    calls: [],
    fail: undefined,
    gate: undefined,
    validityMs: 90 * 86400_000,
    async init () {},
    async issue (req) {
      issuer.calls.push(req)
      if (issuer.gate !== undefined) await issuer.gate
      if (issuer.fail !== undefined) throw issuer.fail
      const leaf = issueTestCert({ issuer: ca, dnsNames: [req.domain], notAfter: new Date(Date.now() + issuer.validityMs) })
      return { chainPem: leaf.certPem + ca.certPem, keyPem: leaf.keyPem }
    },
    async renewalInfo () { return undefined }
  }
  return issuer
}
