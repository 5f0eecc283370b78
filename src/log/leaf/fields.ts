/** Field rules shared by the leaf kinds (one place; zod schemas over decoded leaves). */
import { z } from 'zod';
import { EPOCH_ID_PATTERN } from '../../validation/identifiers.js';

/** Base64 of a 32-byte digest (leaf format v1, JSON). */
export const b64Digest = z.string().regex(/^[A-Za-z0-9+/]{43}=$/);
/** RFC 3339 UTC with milliseconds (leaf format v1). */
export const isoTime = z.string().regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
export const id = z.string().min(1).max(128);
export const kmsKeyId = z.string().min(1).max(2048);

/** Leaf format v2: milliseconds since 1970-01-01T00:00:00Z (CBOR unsigned integer). */
export const msTime = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
/** CBOR byte string of exactly `n` bytes (decoded as Buffer). */
const bytesOf = (n: number) => z.instanceof(Buffer).refine((b) => b.length === n, { message: `expected ${n} bytes` });
/** CBOR byte string of 1..max bytes. */
export const bytesUpTo = (max: number) => z.instanceof(Buffer).refine((b) => b.length >= 1 && b.length <= max, { message: `expected 1..${max} bytes` });
export const digest32 = bytesOf(32);

/** Epoch id (`acme/2026-12`): the one rule in validation/identifiers.ts. */
export const epochId = z.string().regex(EPOCH_ID_PATTERN);

/** Free text that may be shown to people (reason, reference); scanned for card numbers by the verifier. */
export const freeText = (max: number) => z.string().max(max);

/** Who did it (leaf format v2): role, name and the SHA-256 of the client certificate (DER). */
export const principalV2 = z.strictObject({ role: z.string().min(1).max(32), name: z.string().min(1).max(128), cert: digest32 });
type PrincipalV2 = z.infer<typeof principalV2>;

export const sourceAddress = z.string().max(64);

/** `sha256:<64 hex>` as served ↔ the 32 raw bytes a v2 leaf holds. */
export function certFingerprintBytes(fp: string): Buffer {
  const m = /^sha256:([0-9a-f]{64})$/.exec(fp);
  if (!m) throw new Error('certificate fingerprint must be sha256:<64 hex>');
  return Buffer.from(m[1]!, 'hex');
}
export function certFingerprintText(b: Uint8Array): string {
  return `sha256:${Buffer.from(b).toString('hex')}`;
}

/** The principal of a request as leaf format v2 holds it. */
export function principalField(p: { role: string; name: string; certificateFingerprint: string }): PrincipalV2 {
  return { role: p.role, name: p.name, cert: certFingerprintBytes(p.certificateFingerprint) };
}
/** The principal as served (`certificateFingerprint` = `sha256:<hex>`). */
export function principalView(p: PrincipalV2): { role: string; name: string; certificateFingerprint: string } {
  return { role: p.role, name: p.name, certificateFingerprint: certFingerprintText(p.cert) };
}

export function msOf(d: Date): number {
  const t = d.getTime();
  if (!Number.isSafeInteger(t) || t < 0) throw new Error('time out of range for a leaf');
  return t;
}
