/**
 * Keyed fingerprints of payment identifiers, and request MACs for idempotent replays.
 *
 * PCI DSS v4.0.1 Req. 3.5.1.1: a hash of a PAN stored next to (or instead of) it must be a
 * keyed cryptographic hash with the key managed per Req. 3.6/3.7 — an unkeyed hash of a
 * 16-digit PAN is brute-forced in minutes. Both functions here are HMAC-SHA-256 (RFC 2104)
 * with a key held by KMS (supplied by the caller), each under its own domain label so that a
 * fingerprint can never equal a request MAC or another type's fingerprint:
 *
 * - `fingerprint`: HMAC(key, "paylog/fingerprint/v1" ‖ 0x00 ‖ identifier), where identifier is
 *   `card:<PAN digits>`, `us_bank_account:<routing>:<account>` or `iban:<electronic IBAN>`;
 *   result `fp_` + base64url(first 16 bytes) (128 bits: collision-safe for our volumes).
 * - `requestMac`: HMAC(key, "paylog/request-mac/v1" ‖ 0x00 ‖ UTF-8 canonical body), full 32 bytes.
 *
 * Issue 17 (no oracle): fingerprints and MACs computed from now on are v2, each under its own
 * label, and fingerprints under a NEW key (keyring `fingerprint-hmac-v2`), so nothing computed
 * now can be compared with a v1 fingerprint that old leaves carry forever:
 * - `fingerprintV2`: HMAC(fpKey, "paylog/fingerprint/v2" ‖ 0x00 ‖ processor ‖ 0x00 ‖ identifier),
 *   `fp2_` + base64url(first 16 bytes). Scoped to one processor: it links a processor's own
 *   transactions only (which that processor can release anyway). Stored OUTSIDE the log
 *   (`transactions.fingerprint`) and served only to the assigned processor, which cannot submit.
 * - `servedRequestMac`: HMAC(key, "paylog/request-mac/v2" ‖ 0x00 ‖ canonical served projection):
 *   the idempotency MAC covers only what the submitter is served, so replay-vs-conflict cannot
 *   depend on a hidden digit.
 * - `probeServedMac`: the served payment fields under its own label (fpKey), the probe limit's
 *   group key; never comparable with a fingerprint.
 *
 * Deterministic for a given key: the same account always gives the same fingerprint (that is
 * the point — duplicate detection), so fingerprints link transactions of one account; rotating
 * the key changes every fingerprint.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { electronicFormatIBAN } from 'ibantools';
import { PaylogError } from '../errors.js';
import type { PaymentMethod } from '../validation/transaction.js';

export const FINGERPRINT_PREFIX = 'fp_';
const FINGERPRINT_BYTES = 16;
const LABEL_FINGERPRINT = 'paylog/fingerprint/v1';
const LABEL_REQUEST_MAC = 'paylog/request-mac/v1';
export const FINGERPRINT_V2_PREFIX = 'fp2_';
const LABEL_FINGERPRINT_V2 = 'paylog/fingerprint/v2';
const LABEL_REQUEST_MAC_V2 = 'paylog/request-mac/v2';
const LABEL_PROBE_SERVED = 'paylog/probe/served/v1';
/** Minimum HMAC key length accepted (RFC 2104 §3: at least the hash output length). */
const MIN_MAC_KEY_BYTES = 32;

function assertKey(key: Buffer): void {
  if (!Buffer.isBuffer(key) || key.length < MIN_MAC_KEY_BYTES) {
    throw new PaylogError('INTERNAL', 'MAC key must be at least 32 bytes');
  }
}

// RFC 2104 HMAC-SHA-256 over label ‖ 0x00 ‖ message (labels are ASCII without 0x00, so their
// UTF-8 is their ASCII): one update, not three (issue 20: a few per submission).
function labelledHmac(key: Buffer, label: string, message: string): Buffer {
  assertKey(key);
  return createHmac('sha256', key).update(`${label}\u0000${message}`, 'utf8').digest();
}

/** Normalised, type-prefixed identifier of a payment method (the fingerprint's input). */
function paymentIdentifier(pm: PaymentMethod): string {
  switch (pm.type) {
    case 'card':
      return `card:${pm.pan}`;
    case 'us_bank_account':
      return `us_bank_account:${pm.routingNumber}:${pm.accountNumber}`;
    case 'iban':
      return `iban:${electronicFormatIBAN(pm.iban) ?? ''}`;
  }
}

/** `fp_` + base64url of the first 16 bytes of the labelled HMAC of the identifier. */
export function fingerprint(key: Buffer, pm: PaymentMethod): string {
  const mac = labelledHmac(key, LABEL_FINGERPRINT, paymentIdentifier(pm));
  return FINGERPRINT_PREFIX + mac.subarray(0, FINGERPRINT_BYTES).toString('base64url');
}

/**
 * Fingerprint v2 (issue 17): `fp2_` + base64url of the first 16 bytes of the labelled HMAC of
 * `processor ‖ 0x00 ‖ identifier` under the v2 fingerprint key. MUST NOT be served to a
 * principal that can submit (checkout): it would let the submitter test candidates.
 */
export function fingerprintV2(fpKey: Buffer, processor: string, pm: PaymentMethod): string {
  return formatFingerprintV2(fingerprintV2Digest(fpKey, processor, pm));
}

/** The 16 bytes a v2 fingerprint encodes (what `transactions.fingerprint_v2` stores, migration 0019). */
export function fingerprintV2Digest(fpKey: Buffer, processor: string, pm: PaymentMethod): Buffer {
  return labelledHmac(fpKey, LABEL_FINGERPRINT_V2, `${processor}\u0000${paymentIdentifier(pm)}`).subarray(0, FINGERPRINT_BYTES);
}

/** `fp2_` + base64url(digest): the served form of a v2 fingerprint's 16 bytes. */
export function formatFingerprintV2(digest: Uint8Array): string {
  return FINGERPRINT_V2_PREFIX + Buffer.from(digest.buffer, digest.byteOffset, digest.byteLength).toString('base64url');
}

/**
 * 32-byte labelled HMAC of the canonical SERVED projection of a request (issue 17): the value
 * the idempotency decision compares. Its input MUST contain only fields the submitter is
 * served (see `servedProjection` in src/services/transaction-view.ts).
 */
export function servedRequestMac(key: Buffer, canonicalProjection: string): Buffer {
  return labelledHmac(key, LABEL_REQUEST_MAC_V2, canonicalProjection);
}

/**
 * The probe limit's group key of a payment method: HMAC of its canonical masked view (what a
 * submitter is served), under the fingerprint key with a label of its own. Deliberately nothing
 * of the hidden digits (src/services/probe-limit.ts says why).
 */
export function probeServedMac(fpKey: Buffer, canonicalMaskedView: string): Buffer {
  return labelledHmac(fpKey, LABEL_PROBE_SERVED, canonicalMaskedView);
}

/** 32-byte labelled HMAC of a canonical request body (v1: records written before issue 17). */
export function requestMac(key: Buffer, canonicalBody: string): Buffer {
  return labelledHmac(key, LABEL_REQUEST_MAC, canonicalBody);
}

/**
 * Constant-time MAC comparison (`crypto.timingSafeEqual`): the time taken does not depend on
 * where two equal-length MACs first differ. Different lengths are unequal (not an exception).
 */
export function macEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

const LABEL_UNKNOWN_ID = 'paylog/unknown-transaction-id/v1';
const UNKNOWN_ID_PREFIX = 'unknown:';

/**
 * What the log records for a transaction id that does not exist: a keyed digest, never the
 * string itself — a caller can put anything in a URL, including a card number. Repeated
 * attempts on the same id map to the same value, so they can still be correlated.
 */
export function unknownTransactionRef(key: Buffer, transactionId: string): string {
  return UNKNOWN_ID_PREFIX + labelledHmac(key, LABEL_UNKNOWN_ID, transactionId).subarray(0, FINGERPRINT_BYTES).toString('base64url');
}
