/**
 * RFC 9162 §2.1 Merkle tree hashing, proof generation from stored nodes, and proof verification.
 *
 * Pure code: no I/O, no database. Tree sizes and indexes are JavaScript `number`s and must be
 * safe integers (≤ 2^53 − 1); all bit twiddling is done arithmetically so nothing breaks above
 * 2^31.
 *
 * Storage model used by the rest of paylog: every COMPLETE aligned subtree is stored as a node
 * `(level, index)` covering leaves `[index·2^level, (index+1)·2^level)`; level 0 holds the leaf
 * hashes. Because the log is append-only, a node that is complete at some tree size stays complete
 * (and keeps its hash) forever. Incomplete right-hand subtrees of the RFC tree are never stored;
 * they are recomputed from O(log n) complete nodes (see {@link subtreeHash}).
 */
import { createHash, hash } from 'node:crypto';
import { PaylogError } from '../errors.js';

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

/** A stored complete subtree: covers leaves `[index·2^level, (index+1)·2^level)`. */
export interface NodeId {
  level: number;
  index: number;
}

/** Key of a node in the `Map<string, Buffer>` passed to the proof functions: `"<level>:<index>"`. */
export function nodeKey(id: NodeId): string {
  return `${id.level}:${id.index}`;
}

// ---------------------------------------------------------------------------------------------
// Arithmetic helpers (safe for all safe integers, unlike 32-bit bitwise operators).

function isSize(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
}

function lsb(n: number): boolean {
  return n % 2 === 1;
}

function shr(n: number): number {
  return Math.floor(n / 2);
}

function isPowerOfTwo(n: number): boolean {
  if (n < 1) return false;
  while (n % 2 === 0) n /= 2;
  return n === 1;
}

/**
 * RFC 9162 §2.1.1 split point: k is the largest power of two smaller than n (requires n > 1).
 * The one definition; the auditor's bad-entry search (src/audit/locate-bad-entry.ts) imports it.
 */
export function largestPowerOfTwoBelow(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

function requireSize(name: string, n: number): void {
  if (!isSize(n)) {
    throw new PaylogError('BAD_REQUEST', `${name} must be a non-negative safe integer`, { [name]: n });
  }
}

// ---------------------------------------------------------------------------------------------
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

// ---------------------------------------------------------------------------------------------
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

// RFC 9162 §2.1.1: MTH of an RFC-tree subtree = right fold of its complete aligned parts.
function foldRight(hashes: readonly Buffer[]): Buffer {
  let acc = hashes[hashes.length - 1] as Buffer;
  for (let i = hashes.length - 2; i >= 0; i--) acc = hashChildren(hashes[i] as Buffer, acc);
  return acc;
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

// ---------------------------------------------------------------------------------------------
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

function requireHash(h: Buffer | undefined): Buffer {
  if (!Buffer.isBuffer(h) || h.length !== HASH_SIZE) {
    throw new PaylogError('BAD_REQUEST', 'hash must be a 32-byte Buffer');
  }
  return h;
}

/**
 * Streaming MTH for auditors: push leaf hashes in index order, read the root at any time.
 * Memory is the O(log n) frontier only.
 */
export class StreamingTreeBuilder {
  /** Frontier hashes, largest subtree first; levels are implied by the bits of `count`. */
  readonly #frontier: Buffer[] = [];
  readonly #levels: number[] = [];
  #count = 0;

  /**
   * Adds one leaf hash. Returns the hashes of the complete subtrees this leaf completes, by level
   * from 0 (the leaf hash itself): node (l, (size)/2^l − 1) for every l with 2^l dividing the new
   * size — exactly the `merkle_nodes` rows written for this leaf.
   */
  push(leafHash: Buffer): Buffer[] {
    let hash = requireHash(leafHash);
    const completed = [hash];
    let level = 0;
    while (this.#levels.length > 0 && this.#levels[this.#levels.length - 1] === level) {
      this.#levels.pop();
      hash = hashChildren(this.#frontier.pop() as Buffer, hash);
      completed.push(hash);
      level += 1;
    }
    this.#frontier.push(hash);
    this.#levels.push(level);
    this.#count += 1;
    return completed;
  }

  get size(): number {
    return this.#count;
  }

  /** Current root (EMPTY_ROOT before the first push). */
  root(): Buffer {
    return this.#frontier.length === 0 ? EMPTY_ROOT : foldRight(this.#frontier);
  }
}

// ---------------------------------------------------------------------------------------------
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

// ---------------------------------------------------------------------------------------------
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
