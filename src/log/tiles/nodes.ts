/**
 * Merkle nodes and RFC 9162 proofs computed from tiles (C2SP tlog-tiles §Merkle Tree: "Clients
 * can fetch all the tiles they need in parallel and compute any desired proof"). Pure apart from
 * the tile reader handed in; nothing read is trusted — proofs built here are checked against a
 * signed root by the caller like any other proof.
 */
import { PaylogError } from '../../errors.js';
import {
  consistencyProof,
  consistencyProofNodes,
  inclusionProof,
  inclusionProofNodes,
  nodeKey,
  rootFromLeafHashes,
  type NodeId,
} from '../merkle.js';
import { locateNode } from './geometry.js';
import { tilePath, type TileId } from './path.js';

/** Reads one hash tile and returns exactly `tile.width` hashes (or throws). */
export type HashTileReader = (tile: TileId) => Promise<Buffer[]>;

/**
 * Hashes of the complete nodes `ids` of the tree of `size`, from its tiles: each node is the
 * MTH of its aligned run of 2^(level mod 8) hashes in the tile at level floor(level / 8).
 * Each tile is read once. Throws INTEGRITY_FAILURE for a node that is not complete at `size`.
 */
async function nodesFromTiles(ids: readonly NodeId[], size: number, read: HashTileReader): Promise<Map<string, Buffer>> {
  const located = ids.map((id) => {
    const at = locateNode(id.level, id.index, size);
    if (at === undefined) throw new PaylogError('INTEGRITY_FAILURE', 'node is not complete at this tree size', { ...id, size });
    return { id, at };
  });
  const tiles = new Map<string, Promise<Buffer[]>>();
  for (const { at } of located) {
    const p = tilePath(at.tile);
    if (!tiles.has(p)) tiles.set(p, read(at.tile));
  }
  const out = new Map<string, Buffer>();
  for (const { id, at } of located) {
    const hashes = await (tiles.get(tilePath(at.tile)) as Promise<Buffer[]>);
    out.set(nodeKey(id), rootFromLeafHashes(hashes.slice(at.offset, at.offset + at.count)));
  }
  return out;
}

/** RFC 9162 §2.1.3.1 audit path of leaf `index` in the tree of `size`, from tiles. */
export async function inclusionProofFromTiles(index: number, size: number, read: HashTileReader): Promise<Buffer[]> {
  return inclusionProof(index, size, await nodesFromTiles(inclusionProofNodes(index, size), size, read));
}

/** RFC 9162 §2.1.4.1 consistency proof from `from` to `to`, from the tiles of `to`. */
export async function consistencyProofFromTiles(from: number, to: number, read: HashTileReader): Promise<Buffer[]> {
  return consistencyProof(from, to, await nodesFromTiles(consistencyProofNodes(from, to), to, read));
}
