/**
 * Appending leaves to the tree (RFC 9162 §2.1.1 built incrementally): the writer's frontier
 * update and the auditor's streaming builder.
 *
 * MUST: return every complete node that comes into existence, children before parents, so the
 *       writer stores exactly the `merkle_nodes` rows of the new leaves.
 * MUST: refuse a frontier that does not fit the tree size and sizes beyond 2^53 − 1.
 * MUST NOT: do I/O; memory is the O(log n) frontier plus the new nodes.
 */
import { PaylogError } from '../../errors.js';
import { EMPTY_ROOT, foldRight, hashChildren, hashChildrenBinary, hashLeafBinary, requireHash } from './hash.js';
import { rangeNodes, type NodeId } from './nodes.js';
import { requireSize, shr } from './size.js';

// Appending.

interface FrontierEntry {
  level: number;
  index: number;
  hash: Buffer;
}

/**
 * Appends `leafHashes` to a tree of `size` leaves whose frontier (hashes of
 * `rangeNodes(0, size)`, in order) is `frontier`. Returns every complete node that comes into
 * existence (level-0 leaves included, children before parents), the new root and the new
 * frontier. Throws `BAD_REQUEST` if the frontier does not fit `size` or a hash is not 32 bytes.
 */
export function appendLeaves(
  size: number,
  frontier: readonly Buffer[],
  leafHashes: readonly Buffer[],
): { newNodes: Array<NodeId & { hash: Buffer }>; root: Buffer; frontier: Buffer[] } {
  requireSize('size', size);
  const ids = rangeNodes(0, size);
  if (ids.length !== frontier.length) {
    throw new PaylogError('BAD_REQUEST', 'frontier does not match tree size', {
      size,
      expected: ids.length,
      got: frontier.length,
    });
  }
  if (!Number.isSafeInteger(size + leafHashes.length)) {
    throw new PaylogError('BAD_REQUEST', 'tree size would exceed 2^53 - 1', { size });
  }
  const stack: FrontierEntry[] = ids.map((id, i) => ({ ...id, hash: requireHash(frontier[i]) }));
  const newNodes: Array<NodeId & { hash: Buffer }> = [];
  let next = size;
  for (const leafHash of leafHashes) {
    let node: FrontierEntry = { level: 0, index: next, hash: requireHash(leafHash) };
    newNodes.push({ ...node });
    let top = stack[stack.length - 1];
    while (top !== undefined && top.level === node.level) {
      stack.pop();
      node = { level: node.level + 1, index: shr(node.index), hash: hashChildren(top.hash, node.hash) };
      newNodes.push({ ...node });
      top = stack[stack.length - 1];
    }
    stack.push(node);
    next += 1;
  }
  const hashes = stack.map((e) => e.hash);
  return { newNodes, root: hashes.length === 0 ? EMPTY_ROOT : foldRight(hashes), frontier: hashes };
}

/**
 * Streaming MTH for auditors: push leaf hashes (or leaves) in index order, read the root at any
 * time. Memory is the O(log n) frontier only, kept as binary strings (./hash.ts
 * `hashLeafBinary`): the interior nodes are computed without a Buffer each.
 */
export class StreamingTreeBuilder {
  /** Frontier hashes (binary strings), largest subtree first; levels are implied by the bits of `count`. */
  readonly #frontier: string[] = [];
  readonly #levels: number[] = [];
  #count = 0;

  /**
   * Adds one leaf hash. Returns the hashes of the complete subtrees this leaf completes, by level
   * from 0 (the leaf hash itself): node (l, (size)/2^l − 1) for every l with 2^l dividing the new
   * size — exactly the `merkle_nodes` rows written for this leaf.
   */
  push(leafHash: Buffer): Buffer[] {
    const completed = [requireHash(leafHash)];
    this.#add(leafHash.toString('latin1'), completed);
    return completed;
  }

  /** {@link push} without the list of completed subtrees. */
  add(leafHash: Buffer): void {
    this.#add(requireHash(leafHash).toString('latin1'), undefined);
  }

  /** Hashes `leaf` (RFC 9162 leaf hash) and adds it: the auditor's hot path. */
  addLeaf(leaf: Uint8Array): void {
    this.#add(hashLeafBinary(leaf), undefined);
  }

  #add(leafHash: string, completed: Buffer[] | undefined): void {
    let hash = leafHash;
    let level = 0;
    const levels = this.#levels;
    const frontier = this.#frontier;
    while (levels.length > 0 && levels[levels.length - 1] === level) {
      levels.pop();
      hash = hashChildrenBinary(frontier.pop() as string, hash);
      completed?.push(Buffer.from(hash, 'latin1'));
      level += 1;
    }
    frontier.push(hash);
    levels.push(level);
    this.#count += 1;
  }

  get size(): number {
    return this.#count;
  }

  /** Current root (EMPTY_ROOT before the first push). */
  root(): Buffer {
    const f = this.#frontier;
    if (f.length === 0) return EMPTY_ROOT;
    let acc = f[f.length - 1] as string;
    for (let i = f.length - 2; i >= 0; i--) acc = hashChildrenBinary(f[i] as string, acc);
    return Buffer.from(acc, 'latin1');
  }
}
