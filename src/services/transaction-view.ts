/**
 * What a principal is served of a transaction: the receipt, the masked view, the leaf bytes and
 * the inclusion proof, and the served projection the idempotency decision compares (issue 17;
 * SECURITY.md "What each principal is served, and why it cannot be correlated").
 *
 * Contracts:
 * - Nothing served depends on a digit the principal is not served: the masked view carries no
 *   BIN; the v2 fingerprint goes to the assigned processor only; a v1 fingerprint is NEVER served;
 *   format-2 leaf bytes are NEVER served to checkout (`leafServedTo`).
 * - `servedProjection` is exactly the fields a submitter is served back; the idempotency
 *   decision MUST compare nothing else.
 * - Pure: no I/O. The caller has authorized `principal` for the record.
 */
import type { Principal } from '../auth/principal.js';
import { canonicalJson } from '../crypto/canonical-json.js';
import { servedMaskedView } from '../validation/masking.js';
import { LEAF_FORMAT_V2 } from '../log/leaf.js';
import { hashLeaf } from '../log/merkle.js';
import type { TransactionRecord } from './transaction-record.js';

export interface TransactionReceipt {
  transactionId: string;
  logIndex: number;
  leafHash: string;
  paymentMethod: Record<string, unknown>;
  createdAt: string;
}

/** What a caller needs to check a served view alone: the leaf, its inclusion proof, the checkpoint. */
export interface ServedProof {
  /** RFC 9162 §2.1.3 audit path of `logIndex` in the tree of `treeSize` (base64, leaf to root). */
  treeSize: number;
  hashes: string[];
  /** The signed checkpoint (C2SP signed note) for `treeSize`. */
  checkpoint: string;
}

export interface TransactionView extends TransactionReceipt {
  processor: string;
  amount: { value: number; currency: string };
  /**
   * The v2 fingerprint (`fp2_…`, issue 17), served to the assigned processor only, for records
   * written since. Never the v1 fingerprint of older records (their leaves carry it).
   */
  fingerprint?: string;
  metadata: Record<string, string> | null;
  /** True once the record's key material was crypto-shredded (retention or an admin shred). */
  shredded: boolean;
  clientSideEncryption?: { kid: string };
  /** Leaf format of the record's log entry. */
  leafFormat: number;
  /**
   * base64 of the exact leaf bytes (every value above is decoded from it). Absent for checkout
   * when the leaf is format 2: those bytes carry the BIN and a v1 fingerprint forever.
   */
  leaf?: string;
  /** Absent until a signed checkpoint covers the entry (published within a second). */
  proof?: ServedProof;
}

/**
 * Whether `principal` is served the leaf bytes of a record in `leafFormat`. Format-2 leaves
 * carry the BIN and a v1 fingerprint (written before issue 17, kept forever): never served to
 * checkout, the role that can submit candidates. Auditors verify the log and get every leaf; the
 * assigned processor can release the plaintext anyway. v1 leaves (no card-derived field) and v3
 * leaves (brand, last four, expiry) are served to all who may read the record.
 */
function leafServedTo(principal: Principal, leafFormat: number): boolean {
  return !(leafFormat === LEAF_FORMAT_V2 && principal.role === 'checkout');
}

/**
 * What `principal` is served of a record (issue 17): the masked view without a BIN for
 * everyone; the v2 fingerprint only to the assigned processor (the caller has authorized it);
 * the leaf where `leafServedTo`; never a v1 fingerprint. The proof is served to all readers:
 * its hashes are over leaves whose ciphertext is fresh randomness, so they say nothing of a card.
 */
export function servedTransactionView(principal: Principal, record: TransactionRecord, proof: ServedProof | null, shredded: boolean): TransactionView {
  const { createdAt: _c, fingerprint: _v1, paymentMethod, ...view } = record.view;
  return {
    ...view,
    paymentMethod: servedMaskedView(paymentMethod),
    ...(principal.role === 'processor' && record.fingerprintV2 ? { fingerprint: record.fingerprintV2 } : {}),
    logIndex: record.logIndex,
    leafHash: hashLeaf(record.leaf).toString('base64'),
    createdAt: record.view.createdAt,
    leafFormat: record.leafFormat,
    ...(leafServedTo(principal, record.leafFormat) ? { leaf: record.leaf.toString('base64') } : {}),
    ...(proof ? { proof } : {}),
    shredded,
  };
}

/** How a principal is named in log lines: role, name, certificate fingerprint (PCI DSS 10.2.1). */
export function principalForLog(p: Principal): { role: string; name: string; certificateFingerprint: string } {
  return { role: p.role, name: p.name, certificateFingerprint: p.certificateFingerprint };
}

/**
 * The served projection of a submission or a stored record (issue 17): exactly the fields the
 * submitter is served back — transactionId, processor, amount, the masked payment method (no
 * BIN, no holder name) and metadata (empty = absent) — as canonical JSON. The idempotency
 * decision compares nothing else, so it cannot depend on a hidden digit.
 */
export function servedProjection(v: {
  transactionId: string;
  processor: string;
  amount: { value: number; currency: string };
  paymentMethod: Record<string, unknown>;
  metadata?: Record<string, string> | null | undefined;
}): string {
  const metadata = v.metadata && Object.keys(v.metadata).length > 0 ? v.metadata : null;
  return canonicalJson({
    transactionId: v.transactionId,
    processor: v.processor,
    amount: { value: v.amount.value, currency: v.amount.currency },
    paymentMethod: servedMaskedView(v.paymentMethod),
    metadata,
  });
}
