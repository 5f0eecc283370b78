/**
 * paylog's certificate authority (node-forge for X.509/PKCS#10 building and signing; key pairs
 * from node:crypto, because forge's own RSA key generation is slow pure JS and forge cannot
 * sign with or embed EC keys).
 *
 * Every key is RSA-2048, every signature sha256WithRSAEncryption. Private keys are PKCS#8 PEM
 * ("BEGIN PRIVATE KEY"), unencrypted — protect them with file modes.
 */
import { generateKeyPairSync, randomBytes, verify as cryptoVerify, X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import forge from 'node-forge';
import { PaylogError } from '../errors.js';
import {
  assertPrincipalIdentity,
  fingerprintOfDer,
  identityFromX509,
  normalizeSerialHex,
  PAYLOG_ORGANIZATION,
  principalUri,
  type PrincipalIdentity,
} from './identity.js';

const { pki, asn1, md } = forge;

export interface CaMaterial {
  certPem: string;
  keyPem: string;
}

export interface KeyAndCertificate {
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

export interface CertificateInfo {
  serialHex: string;
  fingerprint: string;
  notBefore: Date;
  notAfter: Date;
  identity: PrincipalIdentity | null;
}

export const DEFAULT_CA_COMMON_NAME = 'paylog DEV-ONLY CA - not for production';
export const DEFAULT_CA_VALIDITY_DAYS = 3650;
/** CA/Browser Forum maximum for TLS leaves; also used for client certificates. */
export const DEFAULT_LEAF_VALIDITY_DAYS = 397;
export const MAX_VALIDITY_DAYS = 3650;
export const RSA_MODULUS_BITS = 2048;
export const MIN_CSR_RSA_BITS = 2048;
/** notBefore is backdated by this much so slightly slow peer clocks accept a fresh cert. */
export const CLOCK_SKEW_ALLOWANCE_MS = 5 * 60 * 1000;
/** 128-bit random serial numbers (CA/B BR §7.1 asks for ≥ 64 bits of CSPRNG output). */
export const SERIAL_NUMBER_BYTES = 16;
const DAY_MS = 24 * 60 * 60 * 1000;

/** Signature algorithms accepted on CSRs (PKCS#1 v1.5 with SHA-2; no SHA-1/MD5). */
const ACCEPTED_CSR_SIGNATURES: ReadonlyMap<string, string> = new Map([
  [pki.oids.sha256WithRSAEncryption!, 'sha256'],
  [pki.oids.sha384WithRSAEncryption!, 'sha384'],
  [pki.oids.sha512WithRSAEncryption!, 'sha512'],
]);

// ---------------------------------------------------------------------------------------------
// Keys and serials

/** A fresh RSA-2048 private key as PKCS#8 PEM (node:crypto, native speed). */
export function generateRsaKeyPem(): string {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: RSA_MODULUS_BITS });
  return privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
}

function forgePrivateKey(keyPem: string): forge.pki.rsa.PrivateKey {
  try {
    return pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey;
  } catch {
    throw new PaylogError('BAD_REQUEST', 'private key is not an unencrypted RSA PEM key');
  }
}

function publicFromPrivate(key: forge.pki.rsa.PrivateKey): forge.pki.rsa.PublicKey {
  return pki.setRsaPublicKey(key.n, key.e);
}

/**
 * RFC 5280 §4.1.2.2: positive INTEGER, at most 20 octets. 128 random bits, leading zero octets
 * dropped and a 0x00 prefix added when the top bit is set (minimal DER, still positive).
 * Returns [DER content hex for forge, canonical serial hex].
 */
function randomSerialNumber(): { derHex: string; serialHex: string } {
  for (;;) {
    const hex = normalizeSerialHex(randomBytes(SERIAL_NUMBER_BYTES).toString('hex'));
    if (/^0+$/.test(hex)) continue;
    const derHex = Number.parseInt(hex.slice(0, 2), 16) >= 0x80 ? `00${hex}` : hex;
    return { derHex, serialHex: hex };
  }
}

function assertValidityDays(days: number): number {
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
function lf(pem: string): string {
  return pem.replace(/\r\n/g, '\n');
}

function derOf(cert: forge.pki.Certificate): Buffer {
  return Buffer.from(asn1.toDer(pki.certificateToAsn1(cert)).getBytes(), 'binary');
}

function paylogSubject(p: PrincipalIdentity): forge.pki.CertificateField[] {
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
function loadCa(ca: CaMaterial): LoadedCa {
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
function signLeaf(
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
function principalExtensions(p: PrincipalIdentity): object[] {
  return [
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', clientAuth: true },
    // SAN type 6 = uniformResourceIdentifier
    { name: 'subjectAltName', altNames: [{ type: 6, value: principalUri(p) }] },
  ];
}

// ---------------------------------------------------------------------------------------------
// Public API

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

/**
 * Processor side (RFC 2986 PKCS#10): a CSR for `p`, signed with `keyPem` or a fresh RSA-2048
 * key. The private key never leaves the caller; only `csrPem` is sent to the paylog operator.
 */
export function createCsr(p: PrincipalIdentity, keyPem?: string): { csrPem: string; keyPem: string } {
  const identity = assertPrincipalIdentity(p);
  const pem = keyPem ?? generateRsaKeyPem();
  const key = forgePrivateKey(pem);
  const csr = pki.createCertificationRequest();
  csr.publicKey = publicFromPrivate(key);
  csr.setSubject(paylogSubject(identity));
  csr.setAttributes([
    {
      name: 'extensionRequest',
      extensions: [{ name: 'subjectAltName', altNames: [{ type: 6, value: principalUri(identity) }] }],
    },
  ]);
  csr.sign(key, md.sha256.create());
  return { csrPem: lf(pki.certificationRequestToPem(csr)), keyPem: pem };
}

/** RFC 2986 §3: parse a PEM CSR; only RSA keys are supported. */
function parseCsr(csrPem: string): forge.pki.CertificateSigningRequest {
  try {
    return pki.certificationRequestFromPem(csrPem, true, true) as forge.pki.CertificateSigningRequest;
  } catch {
    throw new PaylogError('BAD_REQUEST', 'not a PEM PKCS#10 certificate signing request with an RSA key');
  }
}

/**
 * RFC 2986 §4.2 proof of possession: the CSR is signed by the key it carries. Checked twice —
 * by forge and, independently, by node:crypto over the same CertificationRequestInfo bytes.
 */
function verifyCsrSelfSignature(csr: forge.pki.CertificateSigningRequest): void {
  const hash = csr.signatureOid ? ACCEPTED_CSR_SIGNATURES.get(csr.signatureOid) : undefined;
  if (!hash) {
    throw new PaylogError('BAD_REQUEST', 'CSR signature algorithm must be RSA with SHA-256, SHA-384 or SHA-512');
  }
  let forgeOk = false;
  try {
    forgeOk = csr.verify();
  } catch {
    forgeOk = false;
  }
  const cri = csr.certificationRequestInfo;
  const nodeOk =
    cri !== null &&
    csr.publicKey !== null &&
    cryptoVerify(
      hash,
      Buffer.from(asn1.toDer(cri).getBytes(), 'binary'),
      pki.publicKeyToPem(csr.publicKey),
      Buffer.from(csr.signature as string, 'binary'),
    );
  if (!forgeOk || !nodeOk) {
    throw new PaylogError('BAD_REQUEST', 'CSR signature does not verify with the key it contains');
  }
  const bits = (csr.publicKey as forge.pki.rsa.PublicKey).n.bitLength();
  if (bits < MIN_CSR_RSA_BITS) {
    throw new PaylogError('BAD_REQUEST', `CSR key is RSA-${bits}; at least RSA-${MIN_CSR_RSA_BITS} is required`);
  }
}

/** Values of one subject attribute (by short name) in a CSR subject. */
function subjectValues(csr: forge.pki.CertificateSigningRequest, shortName: string): string[] {
  return csr.subject.attributes
    .filter((a) => a.shortName === shortName)
    .map((a) => String(a.value));
}

/**
 * The identity is the operator's decision; the CSR may only *agree* with it. CN is required and
 * must equal the name; O and OU, if present, must be `paylog` and the role; a requested SAN
 * URI, if present, must be exactly the principal URI. Anything else the CSR requests is ignored.
 */
function assertCsrAgreesWithIdentity(csr: forge.pki.CertificateSigningRequest, p: PrincipalIdentity): void {
  const disagreements: string[] = [];
  const cn = subjectValues(csr, 'CN');
  if (cn.length !== 1 || cn[0] !== p.name) disagreements.push('CN');
  const ou = subjectValues(csr, 'OU');
  if (ou.length > 1 || (ou.length === 1 && ou[0] !== p.role)) disagreements.push('OU');
  const o = subjectValues(csr, 'O');
  if (o.length > 1 || (o.length === 1 && o[0] !== PAYLOG_ORGANIZATION)) disagreements.push('O');
  const requested = csr.getAttribute({ name: 'extensionRequest' }) as { extensions?: Array<{ name?: string; altNames?: Array<{ type: number; value?: string }> }> } | null;
  const uris = (requested?.extensions ?? [])
    .filter((e) => e.name === 'subjectAltName')
    .flatMap((e) => e.altNames ?? [])
    .filter((a) => a.type === 6)
    .map((a) => a.value);
  if (uris.some((u) => u !== principalUri(p))) disagreements.push('subjectAltName');
  if (disagreements.length > 0) {
    throw new PaylogError(
      'VALIDATION_FAILED',
      `CSR does not match the identity being issued (${p.role}:${p.name}); mismatched: ${disagreements.join(', ')}`,
      { mismatched: disagreements },
    );
  }
}

/**
 * Operator side: verifies the CSR's self-signature and issues a client certificate for the
 * operator-given identity `p` over the CSR's public key. Refuses CSRs whose subject or
 * requested SAN names someone else.
 */
export function signCsr(ca: CaMaterial, csrPem: string, p: PrincipalIdentity, opts?: IssueOptions): IssuedCertificate {
  const identity = assertPrincipalIdentity(p);
  const csr = parseCsr(csrPem);
  verifyCsrSelfSignature(csr);
  assertCsrAgreesWithIdentity(csr, identity);
  const loaded = loadCa(ca);
  return signLeaf(
    loaded,
    csr.publicKey as forge.pki.rsa.PublicKey,
    paylogSubject(identity),
    principalExtensions(identity),
    opts,
  );
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
