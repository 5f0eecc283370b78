/**
 * Stored complete subtrees ("nodes") and the RFC 9162 §2.1.1 Merkle Tree Hash computed from them.
 *
 * Storage model used by the rest of paylog: every COMPLETE aligned subtree is stored as a node
 * `(level, index)` covering leaves `[index·2^level, (index+1)·2^level)`; level 0 holds the leaf
 * hashes. Because the log is append-only, a node that is complete at some tree size stays complete
 * (and keeps its hash) forever. Incomplete right-hand subtrees of the RFC tree are never stored;
 * they are recomputed from O(log n) complete nodes (see {@link subtreeHash}).
 *
 * MUST: throw `INTEGRITY_FAILURE` when a needed stored node is missing, `BAD_REQUEST` for ranges
 *       that are not subtrees of the RFC tree.
 * MUST NOT: read storage itself; callers pass the nodes they loaded as a `Map`.
 */
import { PaylogError } from '../../errors.js';
import { EMPTY_ROOT, foldRight, hashChildren } from './hash.js';
import { largestPowerOfTwoBelow, requireSize } from './size.js';

/** A stored complete subtree: covers leaves `[index·2^level, (index+1)·2^level)`. */
export interface NodeId {
  level: number;
  index: number;
}

/** Key of a node in the `Map<string, Buffer>` passed to the proof functions: `"<level>:<index>"`. */
export function nodeKey(id: NodeId): string {
  return `${id.level}:${id.index}`;
}

// Reference construction.

/**
 * RFC 9162 §2.1.1 Merkle Tree Hash of a list of leaf hashes, computed from scratch.
 * Reference implementation for tests and for verifiers that hold all leaves; O(n) time.
 */
export function rootFromLeafHashes(hashes: readonly Buffer[]): Buffer {
  if (hashes.length === 0) return EMPTY_ROOT;
  return mthRange(hashes, 0, hashes.length);
}

// RFC 9162 §2.1.1: recursive MTH over D[start:end] (end − start ≥ 1).
function mthRange(hashes: readonly Buffer[], start: number, end: number): Buffer {
  const n = end - start;
  if (n === 1) return hashes[start] as Buffer;
  const k = largestPowerOfTwoBelow(n);
  return hashChildren(mthRange(hashes, start, start + k), mthRange(hashes, start + k, end));
}

// Node decomposition.

/**
 * Decomposes `[start, end)` into maximal complete aligned subtrees, left to right.
 * `rangeNodes(0, size)` is the "frontier" of a tree of `size` leaves (one node per set bit of
 * `size`, largest first). Empty for `start === end`.
 */
export function rangeNodes(start: number, end: number): NodeId[] {
  requireSize('start', start);
  requireSize('end', end);
  if (start > end) throw new PaylogError('BAD_REQUEST', 'start must not exceed end', { start, end });
  const out: NodeId[] = [];
  let pos = start;
  while (pos < end) {
    let width = 1;
    let level = 0;
    while (pos % (width * 2) === 0 && pos + width * 2 <= end) {
      width *= 2;
      level += 1;
    }
    out.push({ level, index: pos / width });
    pos += width;
  }
  return out;
}

function lookup(nodes: ReadonlyMap<string, Buffer>, id: NodeId): Buffer {
  const hash = nodes.get(nodeKey(id));
  if (hash === undefined) {
    throw new PaylogError('INTEGRITY_FAILURE', 'stored Merkle node is missing', { ...id });
  }
  return hash;
}

/**
 * MTH(D[start:end]) from stored complete nodes. `[start, end)` must be a subtree of the RFC 9162
 * tree (non-empty, and `start` a multiple of the smallest power of two ≥ `end − start`), which
 * is every range the proof algorithms ask for; an incomplete right subtree is combined from its
 * O(log n) complete parts. Throws `BAD_REQUEST` for other ranges, `INTEGRITY_FAILURE` if a
 * needed node is absent from `nodes`.
 */
export function subtreeHash(start: number, end: number, nodes: ReadonlyMap<string, Buffer>): Buffer {
  requireSize('start', start);
  requireSize('end', end);
  if (end <= start) throw new PaylogError('BAD_REQUEST', 'subtree range is empty', { start, end });
  let span = 1;
  while (span < end - start) span *= 2;
  if (start % span !== 0) {
    throw new PaylogError('BAD_REQUEST', 'range is not a subtree of the Merkle tree', { start, end });
  }
  return foldRight(rangeNodes(start, end).map((id) => lookup(nodes, id)));
}

/** Root hash of the tree of `size` leaves from stored nodes (EMPTY_ROOT for size 0). */
export function rootFromNodes(size: number, nodes: ReadonlyMap<string, Buffer>): Buffer {
  requireSize('size', size);
  if (size === 0) return EMPTY_ROOT;
  return subtreeHash(0, size, nodes);
}
