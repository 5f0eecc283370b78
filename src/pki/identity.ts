/**
 * Principal identity carried in paylog client certificates.
 *
 * Encoding (what `src/pki/ca.ts` writes and this module reads back):
 * - subject `O=paylog, OU=<role>, CN=<name>` (for processors the name is the processor name);
 * - exactly one SAN URI `urn:paylog:principal:<role>:<name>` — the authoritative identity;
 * - extendedKeyUsage `clientAuth`, basicConstraints `CA=false`.
 *
 * This module never decides whether a certificate is *trusted*: callers must first check that
 * the TLS stack verified the chain against paylog's CA (`socket.authorized === true`).
 */
import { createHash, X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { PaylogError } from '../errors.js';
import { PRINCIPAL_NAME_PATTERN, unanchored } from '../validation/identifiers.js';

export const ROLES = ['checkout', 'processor', 'auditor', 'admin'] as const;
export type Role = (typeof ROLES)[number];

export interface PrincipalIdentity {
  role: Role;
  name: string;
}

/** Allowed principal names (processor names, checkout/auditor/admin instance names). */
export { PRINCIPAL_NAME_PATTERN };
/** Subject organisation of every paylog-issued certificate. */
export const PAYLOG_ORGANIZATION = 'paylog';
/** URN namespace of the SAN URI that names a principal. */
const PRINCIPAL_URI_PREFIX = 'urn:paylog:principal:';
/** RFC 5280 §4.2.1.12 id-kp-clientAuth. */
const OID_KP_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
/** Prefix of the certificate fingerprints paylog stores and compares. */
export const FINGERPRINT_PREFIX = 'sha256:';

const PRINCIPAL_URI_PATTERN = new RegExp(`^urn:paylog:principal:([a-z]+):(${unanchored(PRINCIPAL_NAME_PATTERN)})$`);

function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value);
}

function isValidPrincipalName(value: unknown): value is string {
  return typeof value === 'string' && PRINCIPAL_NAME_PATTERN.test(value);
}

/** Throws VALIDATION_FAILED unless `p` is a well-formed identity; returns a clean copy. */
export function assertPrincipalIdentity(p: { role: unknown; name: unknown }): PrincipalIdentity {
  if (!isRole(p.role)) {
    throw new PaylogError('VALIDATION_FAILED', `role must be one of ${ROLES.join(', ')}`, {
      field: 'role',
    });
  }
  if (!isValidPrincipalName(p.name)) {
    throw new PaylogError(
      'VALIDATION_FAILED',
      `name must match ${PRINCIPAL_NAME_PATTERN.source}`,
      { field: 'name' },
    );
  }
  return { role: p.role, name: p.name };
}

/** The SAN URI that names principal `p`: `urn:paylog:principal:<role>:<name>`. */
export function principalUri(p: PrincipalIdentity): string {
  const { role, name } = assertPrincipalIdentity(p);
  return `${PRINCIPAL_URI_PREFIX}${role}:${name}`;
}

/** Inverse of {@link principalUri}; null for anything that is not exactly such a URI. */
export function parsePrincipalUri(uri: string): PrincipalIdentity | null {
  const m = PRINCIPAL_URI_PATTERN.exec(uri);
  if (!m || !isRole(m[1]) || m[2] === undefined) return null;
  return { role: m[1], name: m[2] };
}

/**
 * Node's `subjectaltname` string: entries joined by ", ", each `TYPE:value`; values containing
 * special characters are JSON-quoted by Node, so they can never match the strict URI pattern.
 */
function subjectAltNameUris(subjectaltname: string): string[] {
  return subjectaltname
    .split(', ')
    .filter((entry) => entry.startsWith('URI:'))
    .map((entry) => entry.slice('URI:'.length));
}

/** A subject attribute that must be present exactly once. */
function singleValue(value: string | string[] | undefined): string | null {
  return typeof value === 'string' ? value : null;
}

/** RFC 5280 §4.2.1.6: the principal is named by exactly one paylog SAN URI. */
function principalFromSubjectAltName(subjectaltname: string | undefined): PrincipalIdentity | null {
  if (!subjectaltname) return null;
  const candidates = subjectAltNameUris(subjectaltname).filter((u) =>
    u.toLowerCase().includes('urn:paylog:'),
  );
  if (candidates.length !== 1 || candidates[0] === undefined) return null;
  return parsePrincipalUri(candidates[0]);
}

/**
 * From a Node TLS peer certificate (`tls.PeerCertificate` / `DetailedPeerCertificate`, or
 * `X509Certificate#toLegacyObject()`): reads the SAN URI (authoritative) and checks that
 * `O=paylog`, `OU`=role and `CN`=name agree, that the certificate is not a CA and that it
 * allows `clientAuth`. Returns null if anything is absent, ambiguous or malformed.
 *
 * Does NOT check trust: only call it for a certificate the TLS layer has verified.
 */
export function identityFromPeerCertificate(cert: PeerCertificate): PrincipalIdentity | null {
  if (!cert || typeof cert !== 'object' || !cert.subject) return null;
  const fromSan = principalFromSubjectAltName(cert.subjectaltname);
  if (!fromSan) return null;
  if (singleValue(cert.subject.O) !== PAYLOG_ORGANIZATION) return null;
  if (singleValue(cert.subject.OU) !== fromSan.role) return null;
  if (singleValue(cert.subject.CN) !== fromSan.name) return null;
  if (cert.ca === true) return null;
  if (!cert.ext_key_usage?.includes(OID_KP_CLIENT_AUTH)) return null;
  return fromSan;
}

/** "sha256:" + lowercase hex of SHA-256 over the certificate's DER bytes. */
export function fingerprintOfDer(der: Uint8Array): string {
  return FINGERPRINT_PREFIX + createHash('sha256').update(der).digest('hex');
}

/** "sha256:" + lowercase hex of SHA-256 over the DER of `cert` (from `cert.raw`). */
export function certificateFingerprint(cert: PeerCertificate): string {
  if (!cert?.raw || cert.raw.length === 0) {
    throw new PaylogError('CLIENT_CERTIFICATE_REQUIRED', 'no client certificate presented');
  }
  return fingerprintOfDer(cert.raw);
}

/**
 * Canonical serial number text: lowercase hex of the integer, whole bytes, no leading zero
 * bytes (the form Node's `serialNumber` uses, lowercased). Accepts optional colons.
 */
export function normalizeSerialHex(hex: string): string {
  let h = hex.replace(/:/g, '').toLowerCase();
  if (!/^[0-9a-f]+$/.test(h)) {
    throw new PaylogError('VALIDATION_FAILED', 'serial number must be hexadecimal');
  }
  if (h.length % 2 === 1) h = `0${h}`;
  while (h.length > 2 && h.startsWith('00')) h = h.slice(2);
  return h;
}

/** The peer certificate's serial number in {@link normalizeSerialHex} form. */
export function certificateSerialHex(cert: PeerCertificate): string {
  return normalizeSerialHex(cert.serialNumber);
}

/** Identity encoded in a PEM/DER certificate (same rules as {@link identityFromPeerCertificate}). */
export function identityFromX509(cert: X509Certificate): PrincipalIdentity | null {
  return identityFromPeerCertificate(cert.toLegacyObject());
}
