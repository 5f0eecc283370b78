/**
 * paylog's certificate authority: creating the (development) CA, issuing TLS server and principal
 * client certificates, and reading a certificate's serial, fingerprint, validity and identity.
 * The signing step lives in ./issuance.ts, CSR handling in ./csr.ts (re-exported here, the CA's
 * one public face).
 *
 * MUST: issue CA certificates that only issue end-entity certificates (pathLen 0, RFC 5280
 *       §4.2.1.9) and leaves with the paylog profiles of ./issuance.ts.
 * MUST: refuse hostnames that are neither a DNS name nor an IP literal.
 * MUST NOT: keep any key material; callers store what is returned.
 */
import { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import forge from 'node-forge';
import { PaylogError } from '../errors.js';
import {
  assertPrincipalIdentity,
  fingerprintOfDer,
  identityFromX509,
  normalizeSerialHex,
  PAYLOG_ORGANIZATION,
  type PrincipalIdentity,
} from './identity.js';
import {
  assertValidityDays,
  CLOCK_SKEW_ALLOWANCE_MS,
  DAY_MS,
  forgePrivateKey,
  generateRsaKeyPem,
  lf,
  loadCa,
  paylogSubject,
  principalExtensions,
  publicFromPrivate,
  randomSerialNumber,
  signLeaf,
  type CaMaterial,
  type IssueOptions,
} from './issuance.js';

export { createCsr, signCsr } from './csr.js';
export {
  DEFAULT_LEAF_VALIDITY_DAYS,
  generateRsaKeyPem,
  MAX_VALIDITY_DAYS,
  type CaMaterial,
  type IssuedCertificate,
  type IssueOptions,
} from './issuance.js';

const { pki, md } = forge;

interface KeyAndCertificate {
  certPem: string;
  keyPem: string;
}

interface CertificateInfo {
  serialHex: string;
  fingerprint: string;
  notBefore: Date;
  notAfter: Date;
  identity: PrincipalIdentity | null;
}

export const DEFAULT_CA_COMMON_NAME = 'paylog DEV-ONLY CA - not for production';
const DEFAULT_CA_VALIDITY_DAYS = 3650;

/** A new self-signed RSA-2048 CA. The default CN says plainly that it is a development CA. */
export function createCa(opts?: { commonName?: string; validityDays?: number; now?: Date }): CaMaterial {
  const keyPem = generateRsaKeyPem();
  const key = forgePrivateKey(keyPem);
  const now = opts?.now ?? new Date();
  const days = assertValidityDays(opts?.validityDays ?? DEFAULT_CA_VALIDITY_DAYS);
  const cert = pki.createCertificate();
  cert.version = 2;
  cert.serialNumber = randomSerialNumber().derHex;
  cert.publicKey = publicFromPrivate(key);
  cert.validity.notBefore = new Date(now.getTime() - CLOCK_SKEW_ALLOWANCE_MS);
  cert.validity.notAfter = new Date(now.getTime() + days * DAY_MS);
  const name = [
    { shortName: 'O', value: PAYLOG_ORGANIZATION },
    { shortName: 'CN', value: opts?.commonName ?? DEFAULT_CA_COMMON_NAME },
  ];
  cert.setSubject(name);
  cert.setIssuer(name);
  // RFC 5280 §4.2.1.9 / §4.2.1.3: a CA that only issues end-entity certificates.
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(key, md.sha256.create());
  return { certPem: lf(pki.certificateToPem(cert)), keyPem };
}

/**
 * A TLS server certificate for `hostnames` (first one is the CN). IP literals (e.g. '127.0.0.1',
 * '::1') become IP SANs, everything else DNS SANs. EKU serverAuth.
 */
export function issueServerCertificate(
  ca: CaMaterial,
  hostnames: string[],
  opts?: IssueOptions,
): KeyAndCertificate & { serialHex: string; fingerprint: string } {
  const names = [...new Set(hostnames.map((h) => h.trim()).filter((h) => h.length > 0))];
  if (names.length === 0) throw new PaylogError('VALIDATION_FAILED', 'at least one hostname is required');
  const altNames = names.map((h) => {
    if (isIP(h) !== 0) return { type: 7, ip: h }; // iPAddress
    if (!/^(\*\.)?[a-z0-9]([a-z0-9-]{0,62})(\.[a-z0-9]([a-z0-9-]{0,62}))*$/i.test(h)) {
      throw new PaylogError('VALIDATION_FAILED', `not a valid DNS name or IP address: ${h}`);
    }
    return { type: 2, value: h.toLowerCase() }; // dNSName
  });
  const loaded = loadCa(ca);
  const keyPem = generateRsaKeyPem();
  const issued = signLeaf(
    loaded,
    publicFromPrivate(forgePrivateKey(keyPem)),
    [
      { shortName: 'O', value: PAYLOG_ORGANIZATION },
      { shortName: 'CN', value: names[0]! },
    ],
    [
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames },
    ],
    opts,
  );
  return { ...issued, keyPem };
}

/** A new key pair and client certificate for principal `p` (operator-side key generation). */
export function issuePrincipalCertificate(
  ca: CaMaterial,
  p: PrincipalIdentity,
  opts?: IssueOptions,
): KeyAndCertificate & { serialHex: string; fingerprint: string } {
  const identity = assertPrincipalIdentity(p);
  const loaded = loadCa(ca);
  const keyPem = generateRsaKeyPem();
  const issued = signLeaf(
    loaded,
    publicFromPrivate(forgePrivateKey(keyPem)),
    paylogSubject(identity),
    principalExtensions(identity),
    opts,
  );
  return { ...issued, keyPem };
}


/** Serial, fingerprint, validity and principal identity (null if not a principal cert) of a PEM certificate. */
export function certificateInfo(certPem: string): CertificateInfo {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch {
    throw new PaylogError('BAD_REQUEST', 'not a PEM X.509 certificate');
  }
  return {
    serialHex: normalizeSerialHex(cert.serialNumber),
    fingerprint: fingerprintOfDer(cert.raw),
    notBefore: new Date(cert.validFrom),
    notAfter: new Date(cert.validTo),
    identity: identityFromX509(cert),
  };
}
