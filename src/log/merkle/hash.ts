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

// RFC 9162 §2.1.1: MTH({d(0)}) = HASH(0x00 || d(0)).
export function hashLeaf(leaf: Uint8Array): Buffer {
  // One-shot crypto.hash (Node ≥ 20.12): much cheaper than a Hash object per call.
  return hash('sha256', Buffer.concat([LEAF_PREFIX, leaf]), 'buffer');
}

// RFC 9162 §2.1.1: MTH(D[n]) = HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n])).
export function hashChildren(left: Uint8Array, right: Uint8Array): Buffer {
  return hash('sha256', Buffer.concat([NODE_PREFIX, left, right]), 'buffer');
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
