/**
 * Proof generation from stored nodes: RFC 9162 §2.1.3.1 inclusion (PATH) and §2.1.4.1
 * consistency (PROOF / SUBPROOF), plus the node sets a caller must load for each.
 *
 * MUST: follow the RFC recursions step by step (comments name the step each branch implements).
 * MUST: throw `BAD_REQUEST` for index ≥ size or from > to; return an empty consistency proof for
 *       from = 0 or from = to.
 * MUST NOT: verify proofs (see ./verify.ts) or read storage.
 */
import { PaylogError } from '../../errors.js';
import { nodeKey, rangeNodes, subtreeHash, type NodeId } from './nodes.js';
import { largestPowerOfTwoBelow, requireSize } from './size.js';

// Proof generation from stored nodes.

/** A range `[start, end)` of the RFC tree whose MTH is one proof element. */
interface Span {
  start: number;
  end: number;
}

// RFC 9162 §2.1.3.1: PATH(m, D[n]); returns the sibling subtrees, leaf to root.
function inclusionSpans(index: number, size: number): Span[] {
  const spans: Span[] = [];
  let lo = 0;
  let hi = size;
  let m = index;
  while (hi - lo > 1) {
    const k = largestPowerOfTwoBelow(hi - lo);
    if (m < k) {
      spans.push({ start: lo + k, end: hi }); // PATH(m, D[0:k]) : MTH(D[k:n])
      hi = lo + k;
    } else {
      spans.push({ start: lo, end: lo + k }); // PATH(m − k, D[k:n]) : MTH(D[0:k])
      lo += k;
      m -= k;
    }
  }
  return spans.reverse();
}

// RFC 9162 §2.1.4.1: PROOF(m, D[n]) = SUBPROOF(m, D[n], true); returns subtrees in proof order.
function consistencySpans(from: number, to: number): Span[] {
  const tail: Span[] = [];
  let lo = 0;
  let hi = to;
  let m = from;
  let b = true;
  while (m !== hi - lo) {
    const k = largestPowerOfTwoBelow(hi - lo);
    if (m <= k) {
      tail.push({ start: lo + k, end: hi }); // SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
      hi = lo + k;
    } else {
      tail.push({ start: lo, end: lo + k }); // SUBPROOF(m − k, D[k:n], false) : MTH(D[0:k])
      lo += k;
      m -= k;
      b = false;
    }
  }
  const head: Span[] = b ? [] : [{ start: lo, end: hi }]; // SUBPROOF(m, D[m], false) = {MTH(D[m])}
  return head.concat(tail.reverse());
}

function checkInclusionArgs(index: number, size: number): void {
  requireSize('index', index);
  requireSize('size', size);
  if (index >= size) {
    throw new PaylogError('BAD_REQUEST', 'index must be smaller than tree size', { index, size });
  }
}

function checkConsistencyArgs(from: number, to: number): void {
  requireSize('from', from);
  requireSize('to', to);
  if (from > to) {
    throw new PaylogError('BAD_REQUEST', 'from must not exceed to', { from, to });
  }
}

function spanNodes(spans: readonly Span[]): NodeId[] {
  const seen = new Set<string>();
  const out: NodeId[] = [];
  for (const s of spans) {
    for (const id of rangeNodes(s.start, s.end)) {
      const key = nodeKey(id);
      if (!seen.has(key)) {
        seen.add(key);
        out.push(id);
      }
    }
  }
  return out;
}

/** Stored nodes needed for the inclusion proof of leaf `index` in a tree of `size` (O(log n)). */
export function inclusionProofNodes(index: number, size: number): NodeId[] {
  checkInclusionArgs(index, size);
  return spanNodes(inclusionSpans(index, size));
}

/** RFC 9162 §2.1.3.1 audit path for leaf `index` in the tree of `size`, leaf to root. */
export function inclusionProof(index: number, size: number, nodes: ReadonlyMap<string, Buffer>): Buffer[] {
  checkInclusionArgs(index, size);
  return inclusionSpans(index, size).map((s) => subtreeHash(s.start, s.end, nodes));
}

/** Stored nodes needed for the consistency proof from `from` to `to` (O(log n)). */
export function consistencyProofNodes(from: number, to: number): NodeId[] {
  checkConsistencyArgs(from, to);
  if (from === 0 || from === to) return [];
  return spanNodes(consistencySpans(from, to));
}

/**
 * RFC 9162 §2.1.4.1 consistency proof between tree sizes `from` and `to`. Empty when
 * `from === 0` or `from === to`; throws `BAD_REQUEST` when `from > to`.
 */
export function consistencyProof(from: number, to: number, nodes: ReadonlyMap<string, Buffer>): Buffer[] {
  checkConsistencyArgs(from, to);
  if (from === 0 || from === to) return [];
  return consistencySpans(from, to).map((s) => subtreeHash(s.start, s.end, nodes));
}
