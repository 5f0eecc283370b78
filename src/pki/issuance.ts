/**
 * Issuing one X.509 certificate under paylog's CA (RFC 5280): keys, serial numbers, validity,
 * the paylog subject and extension profiles, and the signing step shared by every issuer
 * (CA-issued server and principal certificates, CSR-based issuance).
 *
 * node-forge builds and signs X.509; key pairs come from node:crypto, because forge's own RSA key
 * generation is slow pure JS and forge cannot sign with or embed EC keys. Every key is RSA-2048,
 * every signature sha256WithRSAEncryption. Private keys are PKCS#8 PEM ("BEGIN PRIVATE KEY"),
 * unencrypted — protect them with file modes.
 *
 * MUST: use 128-bit CSPRNG serials (RFC 5280 §4.1.2.2, CA/B BR §7.1) and never issue beyond the
 *       CA's own notAfter (RFC 5280 §4.1.2.5).
 * MUST: refuse CA material whose key does not match its certificate or that is not a CA.
 * MUST NOT: decide who a certificate is for (callers pass a checked PrincipalIdentity).
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import forge from 'node-forge';
import { PaylogError } from '../errors.js';
import { fingerprintOfDer, normalizeSerialHex, PAYLOG_ORGANIZATION, principalUri, type PrincipalIdentity } from './identity.js';

const { pki, asn1, md } = forge;

export interface CaMaterial {
  certPem: string;
  keyPem: string;
}


export interface IssuedCertificate {
  certPem: string;
  serialHex: string;
  fingerprint: string;
}

export interface IssueOptions {
  /** Validity in days (default {@link DEFAULT_LEAF_VALIDITY_DAYS}); clamped to the CA's own notAfter. */
  validityDays?: number;
  /** Issue "as of" this instant (tests); defaults to now. */
  now?: Date;
}


/** CA/Browser Forum maximum for TLS leaves; also used for client certificates. */
export const DEFAULT_LEAF_VALIDITY_DAYS = 397;
export const MAX_VALIDITY_DAYS = 3650;
const RSA_MODULUS_BITS = 2048;
/** notBefore is backdated by this much so slightly slow peer clocks accept a fresh cert. */
export const CLOCK_SKEW_ALLOWANCE_MS = 5 * 60 * 1000;
/** 128-bit random serial numbers (CA/B BR §7.1 asks for ≥ 64 bits of CSPRNG output). */
const SERIAL_NUMBER_BYTES = 16;
export const DAY_MS = 24 * 60 * 60 * 1000;

// Keys and serials

/** A fresh RSA-2048 private key as PKCS#8 PEM (node:crypto, native speed). */
export function generateRsaKeyPem(): string {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: RSA_MODULUS_BITS });
  return privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
}

export function forgePrivateKey(keyPem: string): forge.pki.rsa.PrivateKey {
  try {
    return pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey;
  } catch {
    throw new PaylogError('BAD_REQUEST', 'private key is not an unencrypted RSA PEM key');
  }
}

export function publicFromPrivate(key: forge.pki.rsa.PrivateKey): forge.pki.rsa.PublicKey {
  return pki.setRsaPublicKey(key.n, key.e);
}

/**
 * RFC 5280 §4.1.2.2: positive INTEGER, at most 20 octets. 128 random bits, leading zero octets
 * dropped and a 0x00 prefix added when the top bit is set (minimal DER, still positive).
 * Returns [DER content hex for forge, canonical serial hex].
 */
export function randomSerialNumber(): { derHex: string; serialHex: string } {
  for (;;) {
    const hex = normalizeSerialHex(randomBytes(SERIAL_NUMBER_BYTES).toString('hex'));
    if (/^0+$/.test(hex)) continue;
    const derHex = Number.parseInt(hex.slice(0, 2), 16) >= 0x80 ? `00${hex}` : hex;
    return { derHex, serialHex: hex };
  }
}

export function assertValidityDays(days: number): number {
  if (!Number.isInteger(days) || days < 1 || days > MAX_VALIDITY_DAYS) {
    throw new PaylogError(
      'VALIDATION_FAILED',
      `validity must be a whole number of days between 1 and ${MAX_VALIDITY_DAYS}`,
      { field: 'validityDays' },
    );
  }
  return days;
}

// ---------------------------------------------------------------------------------------------
// Certificate assembly

/** forge writes CRLF PEM; paylog files use LF. */
export function lf(pem: string): string {
  return pem.replace(/\r\n/g, '\n');
}

function derOf(cert: forge.pki.Certificate): Buffer {
  return Buffer.from(asn1.toDer(pki.certificateToAsn1(cert)).getBytes(), 'binary');
}

export function paylogSubject(p: PrincipalIdentity): forge.pki.CertificateField[] {
  return [
    { shortName: 'O', value: PAYLOG_ORGANIZATION },
    { shortName: 'OU', value: p.role },
    { shortName: 'CN', value: p.name },
  ];
}

interface LoadedCa {
  cert: forge.pki.Certificate;
  key: forge.pki.rsa.PrivateKey;
  keyIdentifier: string;
}

/** Parses CA material and checks that the key belongs to the certificate and it is a CA. */
export function loadCa(ca: CaMaterial): LoadedCa {
  let cert: forge.pki.Certificate;
  try {
    cert = pki.certificateFromPem(ca.certPem);
  } catch {
    throw new PaylogError('INTERNAL', 'CA certificate is not a readable RSA PEM certificate');
  }
  const key = forgePrivateKey(ca.keyPem);
  const certKey = cert.publicKey as forge.pki.rsa.PublicKey;
  if (certKey.n.compareTo(key.n) !== 0 || certKey.e.compareTo(key.e) !== 0) {
    throw new PaylogError('INTERNAL', 'CA private key does not match the CA certificate');
  }
  const bc = cert.getExtension('basicConstraints') as { cA?: boolean } | null;
  if (!bc?.cA) throw new PaylogError('INTERNAL', 'CA certificate is not a CA (basicConstraints)');
  const ski = cert.getExtension('subjectKeyIdentifier') as { subjectKeyIdentifier?: string } | null;
  const keyIdentifier = ski?.subjectKeyIdentifier
    ? forge.util.hexToBytes(ski.subjectKeyIdentifier)
    : cert.generateSubjectKeyIdentifier().getBytes();
  return { cert, key, keyIdentifier };
}

/** RFC 5280 §4.1.2.5: [now - skew, now + days], never beyond the issuer's notAfter. */
function leafValidity(ca: LoadedCa, opts: IssueOptions | undefined): { notBefore: Date; notAfter: Date } {
  const now = opts?.now ?? new Date();
  const days = assertValidityDays(opts?.validityDays ?? DEFAULT_LEAF_VALIDITY_DAYS);
  if (ca.cert.validity.notAfter.getTime() <= now.getTime()) {
    throw new PaylogError('INTERNAL', 'CA certificate has expired; create a new CA');
  }
  const notBefore = new Date(Math.max(now.getTime() - CLOCK_SKEW_ALLOWANCE_MS, ca.cert.validity.notBefore.getTime()));
  const notAfter = new Date(Math.min(now.getTime() + days * DAY_MS, ca.cert.validity.notAfter.getTime()));
  return { notBefore, notAfter };
}

/** Builds and signs (SHA-256) an end-entity certificate for `publicKey` under `ca`. */
export function signLeaf(
  ca: LoadedCa,
  publicKey: forge.pki.rsa.PublicKey,
  subject: forge.pki.CertificateField[],
  extensions: object[],
  opts: IssueOptions | undefined,
): IssuedCertificate {
  const cert = pki.createCertificate();
  const serial = randomSerialNumber();
  cert.version = 2; // v3
  cert.serialNumber = serial.derHex;
  cert.publicKey = publicKey;
  const { notBefore, notAfter } = leafValidity(ca, opts);
  cert.validity.notBefore = notBefore;
  cert.validity.notAfter = notAfter;
  cert.setSubject(subject);
  cert.setIssuer(ca.cert.subject.attributes);
  cert.setExtensions([
    ...extensions,
    { name: 'subjectKeyIdentifier' },
    { name: 'authorityKeyIdentifier', keyIdentifier: ca.keyIdentifier },
  ]);
  cert.sign(ca.key, md.sha256.create());
  return { certPem: lf(pki.certificateToPem(cert)), serialHex: serial.serialHex, fingerprint: fingerprintOfDer(derOf(cert)) };
}

/** RFC 5280 §4.2.1.3/.9/.12 profile of a paylog client (principal) certificate. */
export function principalExtensions(p: PrincipalIdentity): object[] {
  return [
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', clientAuth: true },
    // SAN type 6 = uniformResourceIdentifier
    { name: 'subjectAltName', altNames: [{ type: 6, value: principalUri(p) }] },
  ];
}
