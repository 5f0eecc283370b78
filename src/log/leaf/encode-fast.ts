/**
 * `encodeLeaf` on the submission hot path (issue 20): a CBOR leaf is encoded first and then
 * checked by the auditor's one-pass decoder (./fast-decode.ts) instead of by the zod schemas
 * before encoding.
 *
 * Contract: {@link encodeLeafFast} returns the bytes `encodeLeaf` returns, or throws what it
 * throws. It takes the fast route only for a leaf made of plain values (non-negative safe
 * integers, strings without lone surrogates, byte strings, arrays, plain objects), which the encoder writes
 * exactly and `decodeCbor` gives back unchanged, and only when `decodeLeafFast` vouches for the
 * bytes, i.e. `decodeLeaf` accepts them (a known leaf kind with exactly its fields, in the one
 * canonical encoding): then the zod schemas accept the leaf and `encodeLeaf` writes the same
 * bytes. Everything else (v1 leaves, other values, leaves the fast decoder does not vouch for)
 * goes to `encodeLeaf`, which decides and words the error (test/leaf-encode-fast.test.ts).
 */
import { encodeCbor, MAX_CBOR_DEPTH, type CborValue } from './cbor.js';
import { encodeLeaf, MAX_LEAF_BYTES, type Leaf } from './codec.js';
import { decodeLeafFast } from './fast-decode.js';

/** A UTF-16 surrogate not in a pair (UTF-8 cannot hold it; the encoder would write U+FFFD). */
const LONE_SURROGATE = /\p{Cs}/u;

/** Values that round-trip through the CBOR subset unchanged (no `undefined`, which the encoder would drop). */
function isPlainCbor(v: unknown, depth: number): boolean {
  if (typeof v === 'string') return !LONE_SURROGATE.test(v);
  if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0;
  if (v instanceof Uint8Array) return true;
  if (depth > MAX_CBOR_DEPTH || v === null || typeof v !== 'object') return false;
  if (Array.isArray(v)) return v.every((x) => isPlainCbor(x, depth + 1));
  if (Object.getPrototypeOf(v) !== Object.prototype) return false;
  for (const k in v) if (!isPlainCbor((v as Record<string, unknown>)[k], depth + 1)) return false;
  return true;
}

/** The exact bytes of `leaf` (see the module doc); same result and errors as `encodeLeaf`. */
export function encodeLeafFast(leaf: Leaf): Buffer {
  if (leaf.v !== 1 && isPlainCbor(leaf, 0)) {
    let bytes: Buffer | undefined;
    try {
      bytes = encodeCbor(leaf as unknown as CborValue);
    } catch {
      bytes = undefined; // encodeLeaf decides (and words the error)
    }
    if (bytes !== undefined && bytes.length <= MAX_LEAF_BYTES && decodeLeafFast(bytes) !== undefined) return bytes;
  }
  return encodeLeaf(leaf);
}
