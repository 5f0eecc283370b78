/**
 * C2SP tlog-tiles §Merkle Tree and §Log entries: resource paths.
 *
 *     tile/<L>/<N>[.p/<W>]          hash tiles
 *     tile/entries/<N>[.p/<W>]      entry bundles
 *
 * `<L>` is a decimal level 0..63 without leading zeroes; `<N>` is the tile index in zero-padded
 * 3-digit path elements, all but the last prefixed with `x` (1234067 → `x001/x234/067`); `<W>` is
 * the width 1..255 of a partial tile (absent for a full tile of 256). Pure; parsing is strict:
 * a path parses only if it is the canonical encoding of what it names.
 */
import { PaylogError } from '../../errors.js';

/** tlog-tiles §Merkle Tree: tiles are subtrees of height 8 ... */
export const TILE_HEIGHT = 8;
/** ... so a full tile holds 2^8 = 256 hashes (8,192 bytes) and a full bundle 256 entries. */
export const TILE_WIDTH = 256;
/** tlog-tiles §Merkle Tree: `<L>` is between 0 and 63. */
const MAX_TILE_LEVEL = 63;

/** A hash tile (`level` ≥ 0) or entry bundle (`level` = 'entries'); `width` 256 = full. */
export interface TileId {
  level: number | 'entries';
  index: number;
  width: number;
}

function bad(message: string): PaylogError {
  return new PaylogError('NOT_FOUND', message);
}

/** tlog-tiles §Merkle Tree: `<N>` as zero-padded 3-digit elements, all but the last prefixed with `x`. */
export function encodeTileIndex(index: number): string {
  if (!Number.isSafeInteger(index) || index < 0) throw new PaylogError('BAD_REQUEST', 'tile index must be a non-negative safe integer');
  const groups: string[] = [];
  let n = index;
  do {
    groups.unshift(String(n % 1000).padStart(3, '0'));
    n = Math.floor(n / 1000);
  } while (n > 0);
  return groups.map((g, i) => (i < groups.length - 1 ? `x${g}` : g)).join('/');
}

/** The path of a tile relative to the log prefix, e.g. `tile/0/x001/234.p/7`. */
export function tilePath(t: TileId): string {
  if (t.level !== 'entries' && (!Number.isInteger(t.level) || t.level < 0 || t.level > MAX_TILE_LEVEL)) {
    throw new PaylogError('BAD_REQUEST', 'tile level must be 0..63');
  }
  if (!Number.isInteger(t.width) || t.width < 1 || t.width > TILE_WIDTH) throw new PaylogError('BAD_REQUEST', 'tile width must be 1..256');
  const suffix = t.width === TILE_WIDTH ? '' : `.p/${t.width}`;
  return `tile/${t.level}/${encodeTileIndex(t.index)}${suffix}`;
}

const LEVEL = /^(0|[1-9][0-9]?)$/;
const WIDTH = /^[1-9][0-9]{0,2}$/;
const LAST_GROUP = /^[0-9]{3}$/;
const X_GROUP = /^x[0-9]{3}$/;

/**
 * Parses a path relative to the log prefix (`tile/...`). Throws NOT_FOUND for anything that is
 * not the canonical path of a tile (so a route answers 404, as for any other missing resource).
 */
export function parseTilePath(path: string): TileId {
  const parts = path.split('/');
  if (parts[0] !== 'tile' || parts.length < 3) throw bad('not a tile path');
  const levelPart = parts[1] as string;
  let level: number | 'entries';
  if (levelPart === 'entries') level = 'entries';
  else {
    if (!LEVEL.test(levelPart) || Number(levelPart) > MAX_TILE_LEVEL) throw bad('tile level must be 0..63 without leading zeroes');
    level = Number(levelPart);
  }
  let rest = parts.slice(2);
  let width = TILE_WIDTH;
  const last = rest[rest.length - 1] as string;
  if (rest.length >= 2 && rest[rest.length - 2]?.endsWith('.p')) {
    if (!WIDTH.test(last) || Number(last) > TILE_WIDTH - 1) throw bad('partial tile width must be 1..255 without leading zeroes');
    width = Number(last);
    rest = rest.slice(0, -1);
    rest[rest.length - 1] = (rest[rest.length - 1] as string).slice(0, -2);
  }
  const groups = rest;
  if (groups.length === 0 || !LAST_GROUP.test(groups[groups.length - 1] as string)) throw bad('malformed tile index');
  if (!groups.slice(0, -1).every((g) => X_GROUP.test(g))) throw bad('malformed tile index');
  let index = 0;
  for (const g of groups) index = index * 1000 + Number(g.replace('x', ''));
  if (!Number.isSafeInteger(index)) throw bad('tile index too large');
  const id: TileId = { level, index, width };
  // Canonical only: `x000/005` is not how 5 is encoded.
  if (tilePath(id) !== path) throw bad('tile path is not canonical');
  return id;
}
