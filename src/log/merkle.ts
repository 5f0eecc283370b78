/**
 * RFC 9162 §2.1 Merkle tree: the one entry point the rest of paylog imports.
 *
 * Pure code: no I/O, no database. Tree sizes and indexes are JavaScript `number`s and must be
 * safe integers (≤ 2^53 − 1). The concepts live in src/log/merkle/:
 *   size.ts    split point and size arithmetic        hash.ts    leaf/node hashing, empty root
 *   nodes.ts   stored subtrees and MTH from them       append.ts  frontier update, streaming builder
 *   proofs.ts  inclusion/consistency proof generation  verify.ts  §2.1.3.2 / §2.1.4.2 verification
 *
 * MUST: re-export only; no logic here.
 */
export { EMPTY_ROOT, HASH_SIZE, hashChildren, hashLeaf } from './merkle/hash.js';
export { largestPowerOfTwoBelow } from './merkle/size.js';
export { nodeKey, rangeNodes, rootFromLeafHashes, rootFromNodes, subtreeHash, type NodeId } from './merkle/nodes.js';
export { appendLeaves, StreamingTreeBuilder } from './merkle/append.js';
export {
  consistencyProof,
  consistencyProofNodes,
  inclusionProof,
  inclusionProofNodes,
} from './merkle/proofs.js';
export { verifyConsistency, verifyInclusion } from './merkle/verify.js';
