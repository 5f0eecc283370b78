/**
 * C2SP tlog-tiles §Merkle Tree, §Partial Tiles: which tiles a tree of size s consists of, and
 * where a stored Merkle node sits in them. Pure arithmetic on safe integers (no 32-bit ops).
 *
 * The n-th tile at level l holds, for i in 0..255, MTH(D[(n·256 + i)·256^l : (n·256 + i + 1)·256^l]),
 * i.e. the hashes of the complete subtrees at Merkle level 8·l with indexes n·256 .. n·256+255.
 */
import { TILE_HEIGHT, TILE_WIDTH, type TileId } from './path.js';

/** 256^l as a safe integer (l ≤ 6 for any safe tree size). */
export function tileSpan(level: number): number {
  return TILE_WIDTH ** level;
}

/** tlog-tiles §Partial Tiles: the partial tile at level l for size s has floor(s / 256^l) mod 256 entries. */
export function partialTileWidth(level: number, size: number): number {
  return Math.floor(size / tileSpan(level)) % TILE_WIDTH;
}

/**
 * Every hash tile a tree of `size` leaves is made of, level by level: the full tiles and, where
 * `partialTileWidth` is non-zero, the one partial tile (tlog-tiles §Partial Tiles: empty tiles
 * MUST NOT be served). E.g. size 70,000: 273 full + 1 partial (112) at level 0, 1 full + 1 partial
 * (17) at level 1, 1 partial (1) at level 2.
 */
export function tilesForSize(size: number): TileId[] {
  const out: TileId[] = [];
  for (let level = 0; tileSpan(level) <= size; level++) {
    const full = Math.floor(size / tileSpan(level + 1));
    for (let n = 0; n < full; n++) out.push({ level, index: n, width: TILE_WIDTH });
    const w = partialTileWidth(level, size);
    if (w > 0) out.push({ level, index: full, width: w });
  }
  return out;
}

/** Entry bundles for a tree of `size` (same indexes and widths as level 0). */
export function bundlesForSize(size: number): TileId[] {
  return tilesForSize(size)
    .filter((t) => t.level === 0)
    .map((t) => ({ ...t, level: 'entries' as const }));
}

/** The hash tile (level ≥ 0) of size `size` that holds the node, or the level-0 width for a bundle. */
export function tileWidthAt(level: number, index: number, size: number): number {
  const full = Math.floor(size / tileSpan(level + 1));
  if (index < full) return TILE_WIDTH;
  if (index === full) return partialTileWidth(level, size);
  return 0;
}

/**
 * Where Merkle node (level `nodeLevel`, index `nodeIndex`) is found in the tiles of a tree of
 * `size`: the tile at level floor(nodeLevel / 8) and the run of `2^(nodeLevel mod 8)` tile hashes
 * whose MTH it is (tlog-tiles §Merkle Tree: the levels between tile levels are rebuilt by
 * hashing). The node must be complete in the tree of `size`.
 */
export function locateNode(nodeLevel: number, nodeIndex: number, size: number): { tile: TileId; offset: number; count: number } | undefined {
  const tileLevel = Math.floor(nodeLevel / TILE_HEIGHT);
  const count = 2 ** (nodeLevel % TILE_HEIGHT);
  const first = nodeIndex * count; // index of the first hash at Merkle level 8·tileLevel
  const index = Math.floor(first / TILE_WIDTH);
  const width = tileWidthAt(tileLevel, index, size);
  const offset = first % TILE_WIDTH;
  if (offset + count > width) return undefined; // not complete at this size
  return { tile: { level: tileLevel, index, width }, offset, count };
}

/**
 * The range of stored nodes at Merkle level 8·l that make up the tile: indexes
 * [n·256, n·256 + width).
 */
export function tileNodeRange(t: { level: number; index: number; width: number }): { nodeLevel: number; start: number; end: number } {
  return { nodeLevel: t.level * TILE_HEIGHT, start: t.index * TILE_WIDTH, end: t.index * TILE_WIDTH + t.width };
}

/** Smallest tree size for which the tile exists (its last hash complete). */
export function sizeNeeded(t: TileId): number {
  const level = t.level === 'entries' ? 0 : t.level;
  return t.index * tileSpan(level + 1) + t.width * tileSpan(level);
}
