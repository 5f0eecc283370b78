/**
 * Certificate signing requests (RFC 2986 PKCS#10): the processor side creates one, the operator
 * side checks it and issues a principal certificate over its key.
 *
 * MUST: check proof of possession twice (forge and node:crypto over the same
 *       CertificationRequestInfo bytes, RFC 2986 §4.2), accept only RSA ≥ 2048 bits with SHA-2.
 * MUST: take the identity from the operator; the CSR may only agree with it (CN, O, OU, SAN URI).
 * MUST NOT: copy anything else the CSR requests into the certificate.
 */
import { verify as cryptoVerify } from 'node:crypto';
import forge from 'node-forge';
import { PaylogError } from '../errors.js';
import { assertPrincipalIdentity, PAYLOG_ORGANIZATION, principalUri, type PrincipalIdentity } from './identity.js';
import {
  forgePrivateKey,
  generateRsaKeyPem,
  lf,
  loadCa,
  paylogSubject,
  principalExtensions,
  publicFromPrivate,
  signLeaf,
  type CaMaterial,
  type IssuedCertificate,
  type IssueOptions,
} from './issuance.js';

const { pki, asn1, md } = forge;

const MIN_CSR_RSA_BITS = 2048;

/** Signature algorithms accepted on CSRs (PKCS#1 v1.5 with SHA-2; no SHA-1/MD5). */
const ACCEPTED_CSR_SIGNATURES: ReadonlyMap<string, string> = new Map([
  [pki.oids.sha256WithRSAEncryption!, 'sha256'],
  [pki.oids.sha384WithRSAEncryption!, 'sha384'],
  [pki.oids.sha512WithRSAEncryption!, 'sha512'],
]);

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
