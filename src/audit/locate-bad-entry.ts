/**
 * Naming the first bad entry when the leaves do not rebuild the signed root: a descent of the
 * RFC 9162 §2.1.1 tree using signed child hashes taken from §2.1.3 audit paths.
 *
 * Contract: trusts nothing the server says — every pair of signed child hashes MUST hash to the
 * parent already verified, else `PaylogError('INTEGRITY_FAILURE')`. Memory O(log n).
 */
import { PaylogError } from '../errors.js';
import { hashChildren, hashLeaf, largestPowerOfTwoBelow as splitPoint, StreamingTreeBuilder } from '../log/merkle.js';
import type { InclusionProofFetcher, LeafRangeReader } from './inputs.js';

// RFC 9162 §2.1.3.1: length of PATH(m, D[n]).
function pathLength(m: number, n: number): number {
  let len = 0;
  while (n > 1) {
    const k = splitPoint(n);
    if (m < k) n = k;
    else {
      m -= k;
      n -= k;
    }
    len += 1;
  }
  return len;
}

/**
 * The signed tree's MTH(D[lo+k:hi]) (side 'right', from the audit path of leaf `lo`) or
 * MTH(D[lo:lo+k]) (side 'left', from the path of leaf `lo+k`) for the RFC 9162 subtree
 * `[lo, hi)` with split `k`. In an audit path (leaf to root) the sibling at the top split of
 * that subtree comes right after the path inside it.
 */
async function signedChild(
  fetch: InclusionProofFetcher,
  treeSize: number,
  lo: number,
  hi: number,
  side: 'left' | 'right',
): Promise<Buffer> {
  const k = splitPoint(hi - lo);
  const leaf = side === 'right' ? lo : lo + k;
  const inner = side === 'right' ? pathLength(0, k) : pathLength(0, hi - lo - k);
  const proof = await fetch(leaf, treeSize);
  const h = proof[inner];
  if (h === undefined || h.length !== 32) {
    throw new PaylogError('INTEGRITY_FAILURE', 'inclusion proof is too short for the tree size', { index: leaf, treeSize });
  }
  return h;
}

async function rangeRoot(read: LeafRangeReader, start: number, end: number): Promise<Buffer> {
  const b = new StreamingTreeBuilder();
  let next = start;
  for await (const e of read(start, end)) {
    if (e.index !== next) throw new PaylogError('INTEGRITY_FAILURE', 'leaf range is not dense', { expected: next, got: e.index });
    b.push(hashLeaf(e.leaf));
    next += 1;
  }
  if (next !== end) throw new PaylogError('INTEGRITY_FAILURE', 'leaf range is short', { expected: end, got: next });
  return b.root();
}

/**
 * Finds the first index whose leaf differs from the signed tree, by descending the RFC 9162
 * tree from the signed root: at each subtree `[lo, hi)` with known signed hash, the signed hashes
 * of both children come from two audit paths (and must hash to the parent, so the server cannot
 * lie about them without being caught), the auditor's own hash of the left child is rebuilt from
 * the leaves, and the search continues in the left child if it differs, else in the right.
 * Cost: 2·log2(n) inclusion proofs and at most n leaf re-reads; memory O(log n).
 *
 * Returns `undefined` when the leaves match the signed root. Throws
 * `PaylogError('INTEGRITY_FAILURE')` when the server's proofs do not hash to the signed root
 * (the server's own tree state was rewritten; the entry cannot be named from proofs).
 */
export async function locateFirstBadIndex(args: {
  treeSize: number;
  rootHash: Buffer;
  inclusionProof: InclusionProofFetcher;
  readLeaves: LeafRangeReader;
}): Promise<number | undefined> {
  const { treeSize, inclusionProof, readLeaves } = args;
  if (treeSize === 0) return undefined;
  let lo = 0;
  let hi = treeSize;
  let expected = args.rootHash;
  if ((await rangeRoot(readLeaves, lo, hi)).equals(expected)) return undefined;
  while (hi - lo > 1) {
    const k = splitPoint(hi - lo);
    const right = await signedChild(inclusionProof, treeSize, lo, hi, 'right');
    const left = await signedChild(inclusionProof, treeSize, lo, hi, 'left');
    // RFC 9162 §2.1.1: the parent is HASH(0x01 || left || right).
    if (!hashChildren(left, right).equals(expected)) {
      throw new PaylogError('INTEGRITY_FAILURE', 'server proofs do not match the signed root', { lo, hi });
    }
    const ours = await rangeRoot(readLeaves, lo, lo + k);
    if (!ours.equals(left)) {
      hi = lo + k;
      expected = left;
    } else {
      lo += k;
      expected = right;
    }
  }
  return lo;
}
