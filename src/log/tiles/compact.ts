/**
 * Tile compaction (issue 20, storage; drizzle/0012_merkle_tiles.sql): every full C2SP tlog-tiles
 * hash tile is stored as one `merkle_tiles` row (256 hashes) instead of its ~511 `merkle_nodes`
 * rows, about 32 bytes per leaf instead of about 240.
 *
 * Contract:
 * - The moving is done by the database function `paylog_compact_tile` (the runtime role has no
 *   DELETE on merkle_nodes): it builds the tile from the rows themselves, and the merkle_nodes
 *   trigger lets a row go only when the stored tile reproduces its hash. This module only
 *   decides WHICH tiles to ask for: the next uncompacted tile of each level, in order, while the
 *   stored tree size says it is full. Nothing read here is trusted for anything else.
 * - Nodes of partial tiles are never compacted, so the append path's frontier stays in rows.
 * - Bounded work per run (`maxTiles`), single-flight per process; concurrent runs in several
 *   processes are harmless (a tile is stored once; the loser's call returns false).
 * - Readers see the same hashes before and after (src/log/store.ts, src/services/tiles.ts).
 * - Space: each compacted tile leaves ~511 dead merkle_nodes rows. Autovacuum visits a database
 *   only once per `autovacuum_naptime` (default 1 min), and until then every new node row takes
 *   new space (~200 B per leaf at 1,000 leaves/s). So after every `VACUUM_AFTER_TILES` tiles the
 *   compactor runs `VACUUM (SKIP_LOCKED) merkle_nodes` itself (outside any transaction; it
 *   blocks no insert), and the table stays the size of its partial tiles plus a few tiles of
 *   dead rows. It needs the MAINTAIN privilege (PostgreSQL 17+, granted by drizzle/0015),
 *   checked once per compactor: without it the compactor never asks (autovacuum alone reclaims
 *   the space, at its naptime), so older servers log no warning every few tiles.
 */
import type pg from 'pg';
import { TILE_WIDTH } from './path.js';

/** Tile levels compacted: 0..6 cover trees up to 2^56 leaves (the CHECK of merkle_tiles). */
const MAX_COMPACTED_TILE_LEVEL = 6;
/** Tiles stored per run at most (each a few ms in PostgreSQL); the next publication continues. */
const COMPACT_TILES_PER_RUN = 64;
/** Tiles compacted (≈ 511 dead merkle_nodes rows each) before the compactor vacuums merkle_nodes. */
const VACUUM_AFTER_TILES = 8;
/** Reclaims the dead rows compaction left (see the module contract). */
const VACUUM_NODES = 'VACUUM (SKIP_LOCKED) merkle_nodes';
/** Whether this role may run VACUUM_NODES (MAINTAIN exists from PostgreSQL 17 on; CASE keeps older servers from parsing it). */
const MAY_VACUUM_NODES = `SELECT CASE WHEN current_setting('server_version_num')::integer >= 170000 THEN has_table_privilege('merkle_nodes', 'MAINTAIN') ELSE false END AS ok`;

type Queryable = Pick<pg.Pool, 'query'>;

/** Leaves a tile (level, index) needs to be full: (index + 1) · 256^(level + 1). */
function leavesForFullTile(level: number, index: number): number {
  return (index + 1) * TILE_WIDTH ** (level + 1);
}

/**
 * Compacts the full tiles not yet stored, oldest first, level by level, at most `maxTiles`.
 * Returns how many were stored.
 */
export async function compactFullTiles(q: Queryable, maxTiles = COMPACT_TILES_PER_RUN): Promise<number> {
  const r = await q.query({
    name: 'paylog_compact_state',
    text: `SELECT (SELECT coalesce(max(size), 0) FROM tree_heads)::text AS size,
                  coalesce((SELECT json_object_agg(level, n) FROM (SELECT level, max(idx) + 1 AS n FROM merkle_tiles GROUP BY level) x), '{}'::json) AS next`,
  });
  const row = r.rows[0] as { size: string; next: Record<string, number> };
  const size = Number(row.size);
  let stored = 0;
  for (let level = 0; level <= MAX_COMPACTED_TILE_LEVEL && stored < maxTiles; level++) {
    let index = Number(row.next[String(level)] ?? 0);
    while (stored < maxTiles && leavesForFullTile(level, index) <= size) {
      const done = await q.query({ name: 'paylog_compact_tile', text: 'SELECT paylog_compact_tile($1, $2) AS ok', values: [level, index] });
      if (!(done.rows[0] as { ok: boolean }).ok) break; // not all rows there (yet): next run
      stored += 1;
      index += 1;
    }
  }
  return stored;
}

/** Runs `compactFullTiles` after each signed checkpoint, one run at a time (errors go to `onError`). */
export class TileCompactor {
  #running: Promise<void> | null = null;
  #sinceVacuum = 0;
  #mayVacuum: boolean | undefined;
  #again = false;
  #closed = false;

  constructor(
    private readonly q: Queryable,
    private readonly onError: (e: unknown) => void,
  ) {}

  /** Asks for a run (coalesced with the one in progress). */
  schedule(): void {
    if (this.#closed) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = compactFullTiles(this.q)
      .then(
        async (stored) => {
          this.#sinceVacuum += stored;
          if (this.#sinceVacuum < VACUUM_AFTER_TILES) return;
          this.#sinceVacuum = 0;
          this.#mayVacuum ??= ((await this.q.query(MAY_VACUUM_NODES)).rows[0] as { ok: boolean }).ok;
          if (this.#mayVacuum) await this.q.query(VACUUM_NODES);
        },
        (e: unknown) => this.onError(e),
      )
      .finally(() => {
        this.#running = null;
        if (this.#again) {
          this.#again = false;
          this.schedule();
        }
      });
  }

  /** Waits for the run in progress; no new run starts. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#running;
  }
}
