/**
 * `encodeLeaf`: a leaf's exact bytes, as `encodeLeafReference` (./codec.ts) gives them, at less
 * cost on the submission path (issue 20).
 *
 * The reference checks a CBOR leaf (v2/v3) against its zod schema and then encodes it. Here the
 * builder's output is encoded first and the bytes are kept only when `decodeLeafFast`
 * (./fast-decode.ts) accepts them: that decoder returns a leaf only for bytes `decodeLeaf`
 * accepts (a known kind with exactly its documented fields, in the one canonical encoding;
 * test/leaf-fast-decode.test.ts), so what reaches the log is still a leaf the auditor decodes,
 * byte-identical to the reference's output for the same leaf. Whatever the fast decoder does not
 * vouch for — v1 JSON, any leaf a builder got wrong, anything it was not written for — goes to
 * the reference, which gives its verdict and error (INTERNAL, VALIDATION_FAILED) as before.
 */
import { encodeCbor, type CborValue } from './cbor.js';
import { MAX_LEAF_BYTES, encodeLeafReference, type Leaf } from './codec.js';
import { decodeLeafFast } from './fast-decode.js';

/** Serialises a leaf to its exact bytes (see the module comment and `encodeLeafReference`). */
export function encodeLeaf(leaf: Leaf): Buffer {
  if (leaf.v !== 1) {
    let bytes: Buffer | undefined;
    try {
      bytes = encodeCbor(leaf as unknown as CborValue);
    } catch {
      bytes = undefined; // not even encodable: the reference says why
    }
    if (bytes !== undefined && bytes.length <= MAX_LEAF_BYTES && decodeLeafFast(bytes) !== undefined) return bytes;
  }
  return encodeLeafReference(leaf);
}
