/**
 * C2SP tlog-tiles for auditors (`/v1/log/tiles/...`), built from what the log already stores:
 * hash tiles from the complete-subtree hashes in `merkle_nodes` (tile level l = Merkle level 8·l,
 * one indexed range read of ≤ 256 rows) or, for a full tile already compacted, its one
 * `merkle_tiles` row (src/log/tiles/compact.ts), entry bundles from `log_entries`.
 *
 * Contract:
 * - A tile is served only when the latest signed checkpoint covers it: full tiles once complete,
 *   and a partial tile of width W whenever a signed size reaches it — so partial tiles exist for
 *   every size a checkpoint was signed for (tlog-tiles §Partial Tiles), and nothing is served
 *   beyond what a checkpoint commits to. Their bytes never change (append-only nodes).
 * - A hash tile whose stored nodes are missing is refused (INTEGRITY_FAILURE), never padded.
 *   An entry bundle holds the stored leaves of its range as they are: verifying them against
 *   the tiles and the signed root is the auditor's job.
 */
import type { Db } from '../db/connection.js';
import type { Logger } from 'pino';
import { PaylogError } from '../errors.js';
import { authorize } from '../auth/policy.js';
import type { Principal } from '../auth/principal.js';
import { readCheckpoint } from '../log/checkpoint-publisher.js';
import type { NoteVerifier } from '../log/note.js';
import { encodeEntryBundle, encodeHashTile } from '../log/tiles/encoding.js';
import { sizeNeeded, tileNodeRange } from '../log/tiles/geometry.js';
import { parseTilePath, TILE_WIDTH, type TileId } from '../log/tiles/path.js';
import { HASH_SIZE } from '../log/merkle.js';

/** Full tiles and bundles never change (tlog-tiles §Merkle Tree: "immutable ... long-lived"). */
const FULL_TILE_CACHE_CONTROL = 'max-age=31536000, immutable';
/** Partial tiles never change either, but MAY be deleted once the full tile exists. */
const PARTIAL_TILE_CACHE_CONTROL = 'max-age=86400';
/** How long the latest signed size is reused before re-reading it (the publisher also pushes it). */
const SIGNED_SIZE_TTL_MS = 1_000;
/** Full hash tiles kept in memory (8 KiB each). */
const FULL_TILE_CACHE_ENTRIES = 2_048;

/**
 * The tile's rows, or (idx −1) the compacted full tile (drizzle/0012) — whose first W hashes are
 * also the partial tile of width W of a smaller signed size: one statement, one snapshot.
 */
const SELECT_TILE_NODES = `SELECT idx, hash FROM merkle_nodes WHERE level = $1 AND idx >= $2 AND idx < $3
UNION ALL
SELECT -1, hashes FROM merkle_tiles WHERE level = $4 AND idx = $5
ORDER BY 1`;
const SELECT_BUNDLE_LEAVES = 'SELECT idx, leaf FROM log_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx';

interface TileAnswer {
  bytes: Buffer;
  cacheControl: string;
  /** An entry bundle (tlog-tiles §Log entries: SHOULD be compressed at the HTTP layer). */
  entryBundle: boolean;
  /** A full (width 256) tile or bundle: its bytes never change. */
  full: boolean;
}

export class TilesService {
  #signed: { size: number; at: number } = { size: -1, at: 0 };
  readonly #fullTiles = new Map<string, Buffer>();

  constructor(
    private readonly db: Db,
    private readonly deps: { verifiers: NoteVerifier[]; checkpoint: (p: Principal) => Promise<string>; logger?: Logger },
  ) {}

  /** The publisher reports each new signed size (no wait for the TTL on this instance). */
  noteSigned(size: number): void {
    if (size > this.#signed.size) this.#signed = { size, at: Date.now() };
  }

  async #signedSize(): Promise<number> {
    if (Date.now() - this.#signed.at < SIGNED_SIZE_TTL_MS) return this.#signed.size;
    const c = await readCheckpoint(this.db, this.deps.verifiers);
    this.#signed = { size: Math.max(c?.size ?? 0, this.#signed.size), at: Date.now() };
    return this.#signed.size;
  }

  /** `<prefix>/checkpoint`: the same checkpoint as `/v1/log/checkpoint` (witnessed when configured). */
  async checkpoint(p: Principal): Promise<string> {
    authorize(p, 'log:tiles');
    return await this.deps.checkpoint(p);
  }

  /** `<prefix>/tile/...`: a hash tile or entry bundle, or NOT_FOUND. */
  async tile(p: Principal, path: string): Promise<TileAnswer> {
    authorize(p, 'log:tiles');
    const id = parseTilePath(path);
    if (sizeNeeded(id) > (await this.#signedSize())) throw new PaylogError('NOT_FOUND', 'no such tile in a signed tree');
    const full = id.width === TILE_WIDTH;
    const cacheControl = full ? FULL_TILE_CACHE_CONTROL : PARTIAL_TILE_CACHE_CONTROL;
    if (id.level === 'entries') return { bytes: await this.#bundle(id), cacheControl, entryBundle: true, full };
    if (full) {
      const hit = this.#fullTiles.get(path);
      if (hit !== undefined) return { bytes: hit, cacheControl, entryBundle: false, full };
    }
    const bytes = await this.#hashTile(id as TileId & { level: number });
    if (id.width === TILE_WIDTH) {
      if (this.#fullTiles.size >= FULL_TILE_CACHE_ENTRIES) this.#fullTiles.delete(this.#fullTiles.keys().next().value as string);
      this.#fullTiles.set(path, bytes);
    }
    return { bytes, cacheControl, entryBundle: false, full };
  }

  // tlog-tiles §Merkle Tree: hash i of tile (l, n) is the stored node (8·l, n·256 + i).
  async #hashTile(id: TileId & { level: number }): Promise<Buffer> {
    const r = tileNodeRange(id);
    const rows = (await this.db.$client.query({ name: 'paylog_tile_nodes', text: SELECT_TILE_NODES, values: [r.nodeLevel, r.start, r.end, id.level, id.index] }))
      .rows as Array<{ idx: string; hash: Buffer }>;
    const compacted = rows[0]?.idx === '-1' ? rows[0].hash : undefined;
    if (compacted !== undefined) {
      if (compacted.length !== TILE_WIDTH * HASH_SIZE) throw new PaylogError('INTEGRITY_FAILURE', 'stored Merkle tile has the wrong length');
      return Buffer.from(compacted.subarray(0, id.width * HASH_SIZE));
    }
    if (rows.length !== id.width || rows.some((row, i) => Number(row.idx) !== r.start + i)) {
      throw new PaylogError('INTEGRITY_FAILURE', 'stored Merkle nodes for this tile are incomplete');
    }
    return encodeHashTile(rows.map((row) => row.hash));
  }

  // tlog-tiles §Log entries: uint16-length-prefixed leaves of [n·256, n·256 + width).
  async #bundle(id: TileId): Promise<Buffer> {
    const start = id.index * TILE_WIDTH;
    const rows = (await this.db.$client.query({ name: 'paylog_bundle_leaves', text: SELECT_BUNDLE_LEAVES, values: [start, start + id.width] }))
      .rows as Array<{ idx: string; leaf: Buffer }>;
    if (rows.length !== id.width) this.deps.logger?.error({ bundle: id.index, width: id.width, stored: rows.length }, 'entry bundle range has missing entries');
    return encodeEntryBundle(rows.map((row) => row.leaf));
  }
}
