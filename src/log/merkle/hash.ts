/**
 * RFC 9162 §2.1 hashing: the leaf and interior-node hashes and the empty-tree root.
 *
 * MUST: hash with SHA-256 and the 0x00 (leaf) / 0x01 (node) domain-separation prefixes.
 * MUST: reject any hash that is not a 32-byte Buffer where one is taken as input ({@link requireHash}).
 * MUST NOT: do I/O or know what a leaf contains (leaf kinds live in src/log/leaf).
 */
import { createHash, hash } from 'node:crypto';
import { PaylogError } from '../../errors.js';

/** Output size of SHA-256, the only hash algorithm of the log (RFC 9162 §2.1). */
export const HASH_SIZE = 32;

const LEAF_PREFIX = Buffer.from([0x00]);
const NODE_PREFIX = Buffer.from([0x01]);

// RFC 9162 §2.1.1: MTH({}) = HASH(), the hash of the empty string.
export const EMPTY_ROOT: Buffer = createHash('sha256').digest();

/**
 * One reusable input buffer for the one-shot hashes below: `crypto.hash` is synchronous and reads
 * its input before returning, so no call can see another's bytes, and the hot paths (auditor,
 * appender) allocate nothing but the digest. `views[n]` is the first n bytes of it.
 */
const SCRATCH_BYTES = 1 + 4096;
const scratch = Buffer.alloc(SCRATCH_BYTES);
const views: (Buffer | undefined)[] = [];
const view = (n: number): Buffer => (views[n] ??= scratch.subarray(0, n));
/** The input of an interior node: 0x01 ‖ left ‖ right. */
const nodeInput = view(1 + 2 * HASH_SIZE);

/** SHA-256 of `prefix ‖ a ‖ b` (b may be empty), through the scratch buffer when it fits. */
function hashPrefixed(prefix: number, a: Uint8Array, b?: Uint8Array): Buffer {
  const n = 1 + a.length + (b?.length ?? 0);
  if (n > SCRATCH_BYTES) return hash('sha256', Buffer.concat([prefix === 0 ? LEAF_PREFIX : NODE_PREFIX, a, ...(b ? [b] : [])]), 'buffer');
  scratch[0] = prefix;
  scratch.set(a, 1);
  if (b !== undefined) scratch.set(b, 1 + a.length);
  return hash('sha256', view(n), 'buffer');
}

/**
 * The same two hashes as binary strings (one character per byte, `latin1`): a digest returned as
 * a string costs a fraction of one returned as a Buffer (no ArrayBuffer per call), which is most
 * of the cost of an interior node. For code that keeps many hashes briefly (the auditor's
 * streaming tree); `Buffer.from(s, 'latin1')` gives the bytes.
 */
export function hashLeafBinary(leaf: Uint8Array): string {
  const n = 1 + leaf.length;
  if (n > SCRATCH_BYTES) return hash('sha256', Buffer.concat([LEAF_PREFIX, leaf]), 'binary');
  scratch[0] = 0x00;
  scratch.set(leaf, 1);
  return hash('sha256', view(n), 'binary');
}

/**
 * {@link hashChildren} of two binary-string hashes (32 characters each), as a binary string. The
 * characters are copied in a loop: for 2 × 32 bytes, cheaper than two calls into the native writer.
 */
export function hashChildrenBinary(left: string, right: string): string {
  if (left.length !== HASH_SIZE || right.length !== HASH_SIZE) throw new PaylogError('BAD_REQUEST', 'hash must be 32 bytes');
  const s = scratch;
  s[0] = 0x01;
  for (let k = 0; k < HASH_SIZE; k++) {
    s[1 + k] = left.charCodeAt(k);
    s[1 + HASH_SIZE + k] = right.charCodeAt(k);
  }
  return hash('sha256', nodeInput, 'binary');
}

// RFC 9162 §2.1.1: MTH({d(0)}) = HASH(0x00 || d(0)).
export function hashLeaf(leaf: Uint8Array): Buffer {
  // One-shot crypto.hash (Node ≥ 20.12): much cheaper than a Hash object per call.
  return hashPrefixed(0x00, leaf);
}

// RFC 9162 §2.1.1: MTH(D[n]) = HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n])).
export function hashChildren(left: Uint8Array, right: Uint8Array): Buffer {
  return hashPrefixed(0x01, left, right);
}

/** Rejects anything but a 32-byte Buffer (`BAD_REQUEST`). */
export function requireHash(h: Buffer | undefined): Buffer {
  if (!Buffer.isBuffer(h) || h.length !== HASH_SIZE) {
    throw new PaylogError('BAD_REQUEST', 'hash must be a 32-byte Buffer');
  }
  return h;
}

// RFC 9162 §2.1.1: MTH of an RFC-tree subtree = right fold of its complete aligned parts.
export function foldRight(hashes: readonly Buffer[]): Buffer {
  let acc = hashes[hashes.length - 1] as Buffer;
  for (let i = hashes.length - 2; i >= 0; i--) acc = hashChildren(hashes[i] as Buffer, acc);
  return acc;
}
