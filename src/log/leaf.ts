/**
 * Log leaves: the exact bytes hashed into the RFC 9162 tree (leaf hash = SHA-256(0x00 ‖ leaf),
 * RFC 9162 §2.1.1). Byte-for-byte format: SECURITY.md "Leaf format v3", "Leaf format v2" and
 * "Leaf format v1".
 *
 * - v3 (every new entry): the bytes rules of v2; `v` = 3. Only the `transaction` kind (no BIN,
 *   no fingerprint, the epoch public key's digest) and `key_event` (`publicKeySha256`) differ.
 * - v2 (existing logs): deterministic CBOR (RFC 8949 §4.2.1) map; `v` = 2. Kinds:
 *   `transaction` (carries the served view and the sealed ciphertext), `access`,
 *   `admin_event`, `key_event`. Still decoded and verified. v3 adds the `forward_result` kind and
 *   the access action `forward` (issue 18).
 * - v1 (existing logs): UTF-8 RFC 8785 canonical JSON; `v` = 1. Still decoded and verified.
 *
 * One concern per file under ./leaf/: cbor (the byte rules), fields (shared field rules), v1,
 * transaction, access, admin-event, key-event, codec (decodeLeaf, the reference encoder), encode
 * (encodeLeaf: the builder's CBOR accepted by fast-decode, else the reference), fast-decode
 * (the auditor's hot path: the same acceptance as decodeLeaf for CBOR leaves, without zod).
 * Leaves never hold plaintext card or account data; the auditor checks that (src/audit/leaf-check.ts).
 */
export { encodeLeaf } from './leaf/encode.js';
export { MAX_LEAF_BYTES, decodeLeaf, leafToJson, leafTransactionId, parseCborLeaf, type Leaf, type LeafV2, type LeafType } from './leaf/codec.js';
export {
  LEAF_FORMAT_V1,
  leafV1Schema,
  transactionLeafV1Schema,
  accessLeafV1Schema,
  keyEventLeafV1Schema,
  type LeafV1,
  type TransactionLeafV1,
  type AccessLeafV1,
  type KeyEventLeafV1,
} from './leaf/v1.js';
export {
  LEAF_FORMAT_V2,
  MAX_LEAF_CIPHERTEXT_BYTES,
  transactionLeaf,
  transactionLeafV3Schema,
  maskedForLeaf,
  LEAF_FORMAT_V3,
  LEAF_FORMAT_CURRENT,
  type TransactionLeafV3,
  type TransactionLeafCbor,
  transactionLeafV2Schema,
  transactionViewFromLeaf,
  envelopeFromLeaf,
  maskedPaymentMethodSchema,
  type TransactionLeafV2,
  type TransactionLeafInput,
  type TransactionServedView,
  type KeyReference,
  type LeafEnvelope,
  type MaskedPaymentMethodV2,
} from './leaf/transaction.js';
export { accessLeafV2, accessLeafV2Schema, accessViewFromLeaf, type AccessLeafV2, type AccessLeafInput, type AccessServedView } from './leaf/access.js';
export { forwardResultLeaf, FORWARD_OUTCOMES, type ForwardResultLeaf, type ForwardOutcome } from './leaf/forward-result.js';
export { adminEventLeaf, adminEventLeafSchema, ADMIN_ACTIONS, ADMIN_OUTCOMES, type AdminEventLeaf, type AdminEventInput, type AdminAction } from './leaf/admin-event.js';
export { keyEventLeaf, keyEventLeafV2Schema, KEY_EVENT_KINDS, SYSTEM_ACTOR, CVC_DESTROYED_PERIOD_MS, type KeyEventLeafV2, type KeyEventInput, type KeyEventKind } from './leaf/key-event.js';
export { principalField, principalView, certFingerprintBytes, certFingerprintText } from './leaf/fields.js';
export { encodeCbor, decodeCbor, type CborValue } from './leaf/cbor.js';
export { decodeLeafFast } from './leaf/fast-decode.js';
