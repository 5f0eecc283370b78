/**
 * Proof verification: RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2 (consistency), for the auditor
 * and for clients checking served proofs.
 *
 * MUST: never throw; any malformed input (size, hash length, proof element) yields `false`.
 * MUST: implement the RFC steps in order (comments name them) and the edge cases the RFC leaves
 *       out (from = 0, from = to, from > to) as documented on {@link verifyConsistency}.
 * MUST NOT: compare hashes by anything but their full 32 bytes.
 */
import { EMPTY_ROOT, HASH_SIZE, hashChildren } from './hash.js';
import { isPowerOfTwo, isSize, lsb, shr } from './size.js';

// Verification. Never throws: any malformed input yields `false`.

function isHash(h: unknown): h is Uint8Array {
  return h instanceof Uint8Array && h.length === HASH_SIZE;
}

function isHashList(list: unknown): list is Uint8Array[] {
  return Array.isArray(list) && list.every(isHash);
}

function equalHashes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(a, b) === 0;
}

/** RFC 9162 §2.1.3.2: verifies that `leafHash` is leaf `index` of the tree of `size` with `root`. */
export function verifyInclusion(
  leafHash: Uint8Array,
  index: number,
  size: number,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): boolean {
  if (!isSize(index) || !isSize(size) || !isHash(leafHash) || !isHash(root) || !isHashList(proof)) {
    return false;
  }
  // Step 1: the leaf index must lie inside the tree.
  if (index >= size) return false;
  // Steps 2–3.
  let fn = index;
  let sn = size - 1;
  let r: Uint8Array = leafHash;
  // Step 4.
  for (const p of proof) {
    if (sn === 0) return false; // 4a
    if (lsb(fn) || fn === sn) {
      r = hashChildren(p, r); // 4b.i
      if (!lsb(fn)) {
        // 4b.ii
        while (!lsb(fn) && fn !== 0) {
          fn = shr(fn);
          sn = shr(sn);
        }
      }
    } else {
      r = hashChildren(r, p); // 4b, otherwise
    }
    fn = shr(fn); // 4c
    sn = shr(sn);
  }
  // Step 5.
  return sn === 0 && equalHashes(r, root);
}

/**
 * RFC 9162 §2.1.4.2: verifies that the tree of size `from` with `fromRoot` is a prefix of the
 * tree of size `to` with `toRoot`. Edge cases the RFC algorithm leaves out (it assumes
 * 0 < from < to): `from === to` needs an empty proof and equal roots; `from === 0` needs an
 * empty proof and `fromRoot === EMPTY_ROOT`; `from > to` is always false.
 */
export function verifyConsistency(
  from: number,
  to: number,
  proof: readonly Uint8Array[],
  fromRoot: Uint8Array,
  toRoot: Uint8Array,
): boolean {
  if (!isSize(from) || !isSize(to) || !isHash(fromRoot) || !isHash(toRoot) || !isHashList(proof)) {
    return false;
  }
  if (from > to) return false;
  if (from === to) return proof.length === 0 && equalHashes(fromRoot, toRoot);
  if (from === 0) return proof.length === 0 && equalHashes(fromRoot, EMPTY_ROOT);
  // Step 1.
  if (proof.length === 0) return false;
  // Step 2.
  const path: Uint8Array[] = isPowerOfTwo(from) ? [fromRoot, ...proof] : [...proof];
  // Step 3.
  let fn = from - 1;
  let sn = to - 1;
  // Step 4.
  while (lsb(fn)) {
    fn = shr(fn);
    sn = shr(sn);
  }
  // Step 5.
  let fr = path[0] as Uint8Array;
  let sr = fr;
  // Step 6.
  for (const c of path.slice(1)) {
    if (sn === 0) return false; // 6a
    if (lsb(fn) || fn === sn) {
      fr = hashChildren(c, fr); // 6b.i
      sr = hashChildren(c, sr);
      if (!lsb(fn)) {
        // 6b.ii
        while (!lsb(fn) && fn !== 0) {
          fn = shr(fn);
          sn = shr(sn);
        }
      }
    } else {
      sr = hashChildren(sr, c); // 6b, otherwise
    }
    fn = shr(fn); // 6c
    sn = shr(sn);
  }
  // Step 7.
  return equalHashes(fr, fromRoot) && equalHashes(sr, toRoot) && sn === 0;
}
