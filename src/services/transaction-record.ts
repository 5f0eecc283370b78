/**
 * A stored transaction rebuilt from its lookup row and its log leaf, trusting only the leaf.
 *
 * Contracts:
 * - `recordFromRow` MUST throw INTEGRITY_FAILURE unless the row's leaf is a transaction leaf for
 *   the row's id. Leaf format v2/v3 values come from the leaf alone; the columns of a format v1
 *   record MUST equal what its v1 leaf commits to (the v1 integrity rebuild) before they are served.
 * - The v2 fingerprint comes from the lookup row (records written since issue 17), NEVER from a
 *   leaf; the v1 fingerprint of a leaf is never put in a record's served fields here.
 * - Pure: no I/O, no clock (the SQL that reads the row is src/services/transaction-queries.ts).
 */
import { createHash } from 'node:crypto';
import { PaylogError } from '../errors.js';
import { canonicalJson } from '../crypto/canonical-json.js';
import { FINGERPRINT_V2_PREFIX, formatFingerprintV2 } from '../crypto/fingerprint.js';
import { decodeLeaf, decodeLeafFast, envelopeFromLeaf, transactionViewFromLeaf, type LeafEnvelope, type TransactionServedView } from '../log/leaf.js';

/** A stored transaction as the service serves and opens it. */
export interface TransactionRecord {
  transactionId: string;
  logIndex: number;
  requestMac: Buffer;
  leaf: Buffer;
  leafFormat: number;
  /** The v2 fingerprint from the lookup row (records written since issue 17), never from a leaf. */
  fingerprintV2?: string;
  view: TransactionServedView;
  createdAt: Date;
  envelope: Omit<LeafEnvelope, 'wrappedKeySha256'>;
}

const sha256b64 = (b: Uint8Array) => createHash('sha256').update(b).digest('base64');

/** A `transactions` row (with its leaf) as read by `readTransactionRow` (src/services/transaction-queries.ts). */
export interface TransactionRow {
  transaction_id: string;
  log_index: string | number;
  request_mac: Buffer;
  processor: string | null;
  payment_method_type: string | null;
  masked: Record<string, unknown> | null;
  fingerprint: string | null;
  /** The v2 fingerprint's 16 bytes (rows since migration 0019; before, `fingerprint` held `fp2_…`). */
  fingerprint_v2: Buffer | null;
  amount_value: string | number | null;
  currency: string | null;
  metadata: Record<string, string> | null;
  envelope_version: number | null;
  iv: Buffer | null;
  ciphertext: Buffer | null;
  tag: Buffer | null;
  key_commitment: Buffer | null;
  salt: Buffer | null;
  /** Read only for v1 records (which always have it); NULL on epoch-wrapped records since migration 0024. */
  created_at: Date;
  leaf: Buffer | null;
}

/** The view a v1 record's columns serve (format v1 records only; unchecked). */
export function legacyTransactionView(r: TransactionRow): TransactionServedView {
  return {
    transactionId: r.transaction_id,
    processor: r.processor ?? '',
    amount: { value: Number(r.amount_value), currency: r.currency ?? '' },
    paymentMethod: (r.masked ?? {}) as Record<string, unknown>,
    fingerprint: r.fingerprint ?? '',
    metadata: r.metadata ?? null,
    createdAt: r.created_at.toISOString(),
  };
}

export function recordMismatch(): PaylogError {
  return new PaylogError('INTEGRITY_FAILURE', 'the stored record does not match its log entry');
}

/**
 * Builds the record from a row and its leaf, trusting only the leaf: the leaf must be a
 * transaction leaf for this id; v2 values come from the leaf; v1 columns must equal what the
 * v1 leaf commits to (processor, amount, payment method type, metadata digest, ciphertext
 * digest is checked by the envelope's key commitment and tag at release). Throws INTEGRITY_FAILURE.
 */
export function recordFromRow(r: TransactionRow): TransactionRecord {
  if (!r.leaf) throw recordMismatch();
  // The fast path returns what decodeLeaf returns, or nothing (then the reference path decides);
  // its byte strings are views into r.leaf, which the record keeps and nothing writes to.
  const leaf = decodeLeafFast(r.leaf)?.leaf ?? decodeLeaf(r.leaf);
  if (leaf.type !== 'transaction') throw recordMismatch();
  const base = {
    transactionId: r.transaction_id,
    logIndex: Number(r.log_index),
    requestMac: r.request_mac,
    leaf: r.leaf,
    leafFormat: leaf.v,
    ...(r.fingerprint_v2 ? { fingerprintV2: formatFingerprintV2(r.fingerprint_v2) } : r.fingerprint?.startsWith(FINGERPRINT_V2_PREFIX) ? { fingerprintV2: r.fingerprint } : {}),
  };
  if (leaf.v !== 1) {
    if (leaf.id !== r.transaction_id) throw recordMismatch();
    const { wrappedKeySha256: _wk, ...envelope } = envelopeFromLeaf(leaf);
    return { ...base, view: transactionViewFromLeaf(leaf), createdAt: new Date(leaf.time), envelope };
  }
  const view = legacyTransactionView(r);
  const metadataSha256 = r.metadata ? sha256b64(Buffer.from(canonicalJson(r.metadata), 'utf8')) : undefined;
  if (
    leaf.transactionId !== r.transaction_id ||
    leaf.processor !== view.processor ||
    leaf.amount.value !== view.amount.value ||
    leaf.amount.currency !== view.amount.currency ||
    leaf.paymentMethodType !== r.payment_method_type ||
    (r.masked as { type?: unknown } | null)?.type !== leaf.paymentMethodType ||
    leaf.metadataSha256 !== metadataSha256 ||
    !r.iv || !r.ciphertext || !r.tag || !r.key_commitment
  ) {
    throw recordMismatch();
  }
  return {
    ...base,
    view,
    createdAt: r.created_at,
    envelope: {
      version: r.envelope_version ?? 1,
      key: transactionKeyRef(leaf.envelope),
      salt: r.salt ?? Buffer.alloc(0),
      iv: r.iv,
      ciphertext: r.ciphertext,
      tag: r.tag,
      keyCommitment: r.key_commitment,
    },
  };
}

/**
 * The transaction leaf's key reference: a KMS key id (envelope v1) or a key epoch id (envelope
 * v2). The one place to change when leaf format v2 defines the reference.
 */
export function transactionKeyRef(ref: { kmsKeyId?: string | undefined; epochId?: string | undefined }): { kmsKeyId: string } | { epochId: string } {
  return ref.epochId !== undefined ? { epochId: ref.epochId } : { kmsKeyId: ref.kmsKeyId! };
}
