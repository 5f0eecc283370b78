/**
 * Leaf step of the audit: each leaf decodes in the canonical leaf format (v1, v2 or v3, see
 * src/log/leaf.ts) and holds no string that looks like a primary account number.
 *
 * Contract: pure. MUST NOT put the offending string in a failure message (no card data in
 * reports). The PAN detector is the one validation uses (src/validation/identifiers.ts).
 */
import { PaylogError } from '../errors.js';
import { decodeLeaf, decodeLeafFast, type Leaf } from '../log/leaf.js';
import { readHotFacts, type HotFacts } from '../log/leaf/fast-shapes.js';
import { containsPanLikeIdentifier, containsPanLikeNumber, mayHoldPan } from '../validation/identifiers.js';
import type { Failure } from './failures.js';

// The PAN detector is the one validation uses (src/validation/identifiers.ts): same NFKC folding,
// same separators, same lengths. Re-exported for the scripts and tests that import it from here.
export { containsPanLikeIdentifier, containsPanLikeNumber, luhnValid, PAN_MAX_DIGITS, PAN_MIN_DIGITS } from '../validation/identifiers.js';

/**
 * Fields whose format is pinned by the leaf schema to a digest (hex or base64 of 32 bytes): not
 * text, so not scanned — a random SHA-256 in hex holds a Luhn-valid 13-digit run ≈0.4% of the time.
 */
const DIGEST_FIELDS = new Set(['certificateFingerprint', 'ciphertextSha256', 'keyCommitment', 'wrappedKeySha256', 'metadataSha256', 'fp']);

/**
 * Free-text fields: scanned with grouping separators bridged, as a PAN is often written
 * (`md` = v2 transaction metadata: its keys and values are both free text).
 */
const FREE_TEXT_FIELDS = new Set(['reference', 'reason', 'note', 'md']);

/**
 * True when any string of the decoded leaf looks like a PAN. Keys are fixed by the schema,
 * except inside v2 metadata (`md`), whose keys are scanned too. Byte strings (v2 binary fields:
 * ciphertext, digests) are not text and are skipped.
 */
function leafHoldsPanLikeNumber(value: unknown, key = '', freeText = false): boolean {
  const free = freeText || FREE_TEXT_FIELDS.has(key);
  if (typeof value === 'string') {
    if (DIGEST_FIELDS.has(key) || !mayHoldPan(value)) return false;
    return free ? containsPanLikeNumber(value) : containsPanLikeIdentifier(value);
  }
  if (value instanceof Uint8Array) return false;
  if (Array.isArray(value)) return value.some((v) => leafHoldsPanLikeNumber(v, key, free));
  if (value !== null && typeof value === 'object') {
    return Object.entries(value).some(([k, v]) => (key === 'md' && mayHoldPan(k) && containsPanLikeNumber(k)) || leafHoldsPanLikeNumber(v, k, free));
  }
  return false;
}

/**
 * Leaf format check, v1 or v2 (see `src/log/leaf.ts`) plus the no-plaintext rule: canonical, known
 * type, exactly the documented fields, and no string (key or value) holding a PAN-like number.
 * Returns the decoded leaf or a failure (never includes the offending string).
 */
export function checkLeaf(index: number, bytes: Uint8Array): { leaf: Leaf } | { failure: Failure } {
  // Hot path (issue 20): a CBOR leaf the fast decoder vouches for is exactly what decodeLeaf
  // returns; the PAN walk then runs only when one of its text strings could pass `mayHoldPan`.
  const fast = decodeLeafFast(bytes);
  if (fast !== undefined) return fast.textMayHoldPan && leafHoldsPanLikeNumber(fast.leaf) ? cardDataFailure(index) : { leaf: fast.leaf };
  return checkLeafReference(index, bytes);
}

/**
 * {@link checkLeaf} of the auditor's hot path (issue 20): the facts the ledgers read of a leaf of
 * one of the two hot shapes that passes every check of `checkLeaf` and whose text cannot hold a
 * PAN (`textMayHoldPan` false: `checkLeaf` would accept it without the walk). `undefined`: any
 * other leaf — `checkLeaf` gives its verdict. See `readHotFacts` (src/log/leaf/fast-shapes.ts).
 */
export function checkHotLeaf(bytes: Uint8Array): HotFacts | undefined {
  const facts = readHotFacts(bytes);
  return facts === undefined || facts.textMayHoldPan ? undefined : facts;
}

/**
 * The reference leaf check (`decodeLeaf` with its zod schemas, then the PAN pre-filter and walk):
 * what {@link checkLeaf} does for every leaf the fast path does not vouch for, and what
 * test/leaf-fast-decode.test.ts holds the fast path to.
 */
export function checkLeafReference(index: number, bytes: Uint8Array): { leaf: Leaf } | { failure: Failure } {
  let leaf: Leaf;
  try {
    leaf = decodeLeaf(bytes);
  } catch (e) {
    const why = e instanceof PaylogError ? e.message : 'undecodable leaf';
    return { failure: { code: 'LEAF_INVALID', index, message: `entry ${index}: ${why}` } };
  }
  // Pre-filter: canonical JSON and CBOR text strings never escape digits, so a leaf whose bytes
  // hold neither 13 digits in a row (single separators allowed) nor any byte ≥ 0x80 (NFKC may
  // fold a non-ASCII character into a digit) cannot hold a PAN-like string. A v2 (CBOR) leaf
  // always has such bytes; the walk then tests each text string with the same cheap check first.
  if (mayHoldPan(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1')) && leafHoldsPanLikeNumber(leaf)) {
    return cardDataFailure(index);
  }
  return { leaf };
}

function cardDataFailure(index: number): { failure: Failure } {
  return { failure: { code: 'CARD_DATA_IN_LEAF', index, message: `entry ${index}: leaf holds a Luhn-valid 13-19 digit number (possible card data)` } };
}
