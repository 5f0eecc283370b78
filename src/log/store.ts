/**
 * Reads of the stored Merkle log: the trusted tree head and Merkle nodes by id.
 *
 * Contract:
 * - This module owns the two read statements every reader of the stored tree shares (the
 *   checkpoint publisher, the log read API, restore, the witness submitter, and the append
 *   driver under its lock). It MUST NOT write: the append path (src/log/append/) is the only
 *   writer of `tree_heads` and `merkle_nodes`.
 * - `readTreeHead` MUST return only a head the service can trust (src/log/tree-head.ts): with a
 *   head key, the largest row whose MAC verifies (or a legacy row at or below the migration's
 *   mark), checked row by row, page by page; without one, the largest row as is.
 * - A node is read from its `merkle_nodes` row or, once its full tile was compacted into
 *   `merkle_tiles` (src/log/tiles/compact.ts), computed from the tile: the same hash either way.
 * - It knows nothing about payments.
 */
import type pg from 'pg';
import type { Db } from '../db/connection.js';
import { HASH_SIZE, nodeKey, rootFromLeafHashes, type NodeId } from './merkle.js';
import { TILE_HEIGHT } from './tiles/path.js';
import { TREE_HEAD_PAGE, treeHeadMacValid } from './tree-head.js';

export interface TreeHead {
  size: number;
  rootHash: Buffer;
}

/** A pool or a checked-out client (the append driver reads under its lock, on its client). */
type Queryable = Pick<pg.Pool | pg.PoolClient, 'query'>;

/** The "legacy" column: a NULL-MAC row written before the column existed, at or below the mark. */
export const LEGACY_HEAD_COLUMN = `(mac IS NULL AND size <= coalesce((SELECT value FROM paylog_marks WHERE name = 'legacy_tree_head_max'), 0)) AS legacy`;

const SELECT_HEADS = `SELECT size, root_hash, mac,
    ${LEGACY_HEAD_COLUMN}
  FROM tree_heads WHERE size < $1 ORDER BY size DESC LIMIT ${TREE_HEAD_PAGE}`;
/**
 * Each asked node from its row, or — once its tile is full and compacted (drizzle/0012) — the run
 * of 2^(level mod 8) hashes of its tile it is the MTH of. One statement, so one snapshot: a
 * compaction committing meanwhile is seen entirely or not at all.
 */
const SELECT_NODES = `WITH w AS (SELECT DISTINCT * FROM unnest($1::smallint[], $2::bigint[]) AS w(level, idx))
SELECT w.level, w.idx, n.hash, NULL::bytea AS run FROM w JOIN merkle_nodes n ON n.level = w.level AND n.idx = w.idx
UNION ALL
SELECT w.level, w.idx, NULL, substring(t.hashes FROM (((w.idx << (w.level % 8)) & 255) * 32 + 1)::integer FOR 32 << (w.level % 8))
  FROM w JOIN merkle_tiles t ON t.level = w.level / 8 AND t.idx = (w.idx << (w.level % 8)) >> 8
 WHERE NOT EXISTS (SELECT 1 FROM merkle_nodes n WHERE n.level = w.level AND n.idx = w.idx)`;

/** Whether a stored head row may be trusted (see the module contract). */
export function headTrusted(headKey: Buffer | undefined, size: number, rootHash: Buffer, mac: Buffer | null, legacy: boolean): boolean {
  return headKey === undefined || legacy || treeHeadMacValid(headKey, size, rootHash, mac);
}

/**
 * Reads the latest tree head the service can trust (null when the log is empty): see
 * src/log/tree-head.ts. Without `headKey` the largest row is taken as is.
 */
export async function readTreeHead(db: Db, headKey?: Buffer): Promise<TreeHead | null> {
  return await selectHead(db.$client, headKey);
}

/** `readTreeHead` on a given pool or client. */
export async function selectHead(q: Queryable, headKey?: Buffer): Promise<TreeHead | null> {
  let below = Number.MAX_SAFE_INTEGER;
  for (;;) {
    const r = await q.query({ name: 'paylog_heads', text: SELECT_HEADS, values: [below] });
    const rows = r.rows as { size: string; root_hash: Buffer; mac: Buffer | null; legacy: boolean }[];
    for (const row of rows) {
      const size = Number(row.size);
      if (headTrusted(headKey, size, row.root_hash, row.mac, row.legacy)) return { size, rootHash: row.root_hash };
    }
    if (rows.length < TREE_HEAD_PAGE) return null;
    below = Number(rows[rows.length - 1]!.size);
  }
}

/** The node that is the MTH of a tile's run of 2^k hashes (undefined when the run is short: not served). */
function nodeFromTileRun(run: Buffer, k: number): Buffer | undefined {
  if (run.length !== HASH_SIZE << k) return undefined;
  if (k === 0) return run;
  const hashes: Buffer[] = [];
  for (let at = 0; at < run.length; at += HASH_SIZE) hashes.push(run.subarray(at, at + HASH_SIZE));
  return rootFromLeafHashes(hashes);
}

/** Fetches stored Merkle nodes by id in one indexed query (rows, or runs of compacted tiles). */
export async function readNodes(db: Db, ids: NodeId[]): Promise<Map<string, Buffer>> {
  return await selectNodes(db.$client, ids);
}

/** `readNodes` on a given pool or client. */
export async function selectNodes(q: Queryable, ids: NodeId[]): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  if (ids.length === 0) return out;
  const r = await q.query({
    name: 'paylog_nodes',
    text: SELECT_NODES,
    values: [ids.map((n) => n.level), ids.map((n) => n.index)],
  });
  for (const row of r.rows as { level: number; idx: string; hash: Buffer | null; run: Buffer | null }[]) {
    const hash = row.hash ?? nodeFromTileRun(row.run!, row.level % TILE_HEIGHT);
    if (hash) out.set(nodeKey({ level: row.level, index: Number(row.idx) }), hash);
  }
  return out;
}
