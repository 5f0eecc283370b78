/**
 * Issue 20, storage: full Merkle tiles stored as one `merkle_tiles` row (drizzle/0012).
 * - A database written before migration 0012 (one merkle_nodes row per node) migrates and is
 *   compacted; every node, tile and proof read afterwards is byte-identical, levels 0 and 1.
 * - Append-only holds: the runtime role can neither delete nodes nor write tiles; the owner's
 *   UPDATE/DELETE/TRUNCATE are refused as before; the compaction function removes nothing from
 *   a tile whose stored nodes disagree with each other.
 * - On a running service (which compacts after each checkpoint by itself): the entries API (with
 *   its per-entry `nodes`, which verify-log checks against the tree it rebuilds from the leaves)
 *   and the proofs are unchanged by a further compaction run, and verify-log accepts the log.
 */
import type pg from 'pg';
import { migrateUpTo } from './helpers/migrate.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cardTransaction, newTestDatabase, startTestPaylog, type TestPaylog } from './helpers/paylog.js';
import { query, withClient } from './helpers/db.js';
import { applyMigrations, openAppDatabase, type AppDatabase } from '../src/db/connection.js';
import { appendLeaves, hashLeaf, inclusionProof, inclusionProofNodes, nodeKey, rangeNodes, rootFromLeafHashes, verifyInclusion, type NodeId } from '../src/log/merkle.js';
import { selectNodes } from '../src/log/store.js';
import { TileCompactor, compactFullTiles } from '../src/log/tiles/compact.js';
import { TilesService } from '../src/services/tiles.js';
import { tilePath } from '../src/log/tiles/path.js';
import { tilesForSize } from '../src/log/tiles/geometry.js';
import type { Principal } from '../src/auth/principal.js';
import { LogClient, toNoteVerifiers, verifyRemoteLog } from '../src/audit/index.js';

const auditor = { role: 'auditor', name: 'auditor' } as Principal;

async function compactAll(pool: pg.Pool): Promise<number> {
  let total = 0;
  for (let n = await compactFullTiles(pool); n > 0; n = await compactFullTiles(pool)) total += n;
  return total;
}

describe('a database from before migration 0012, compacted', () => {
  const SIZE = 65_536 + 3 * 256 + 77; // level-1 tile 0 full, 259 full level-0 tiles, a partial one
  const leaves = Array.from({ length: SIZE }, (_, i) => Buffer.from(`leaf ${i}`));
  const hashes = leaves.map((l) => hashLeaf(l));
  const { newNodes, root } = appendLeaves(0, [], hashes);
  const all = new Map(newNodes.map((n) => [nodeKey(n), n.hash]));
  let url: string;
  let app: AppDatabase;
  // Every node an auditor's reads touch: proofs of many indexes, frontiers of many sizes, and a sample.
  const probeIds: NodeId[] = [];
  for (const i of [0, 1, 255, 256, 300, 65_535, 65_536, 65_700, SIZE - 1]) probeIds.push(...inclusionProofNodes(i, SIZE));
  for (const s of [1, 256, 257, 65_536, 65_537, SIZE - 1, SIZE]) probeIds.push(...rangeNodes(0, s));
  for (let i = 0; i < newNodes.length; i += 97) probeIds.push(newNodes[i]!);

  beforeAll(async () => {
    url = await newTestDatabase();
    await migrateUpTo(url, 11);
    await withClient(url, async (c) => {
      for (let i = 0; i < newNodes.length; i += 20_000) {
        const part = newNodes.slice(i, i + 20_000);
        await c.query('INSERT INTO merkle_nodes (level, idx, hash) SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bytea[])', [part.map((n) => n.level), part.map((n) => n.index), part.map((n) => n.hash)]);
      }
      await c.query('INSERT INTO tree_heads (size, root_hash) VALUES ($1, $2)', [SIZE, root]);
    });
    await applyMigrations(url);
    app = openAppDatabase(url);
  }, 120_000);
  afterAll(async () => {
    await app?.close();
  });

  async function tilesNow(): Promise<Map<string, Buffer>> {
    const tiles = new TilesService(app.db, { verifiers: [], checkpoint: async () => '' });
    tiles.noteSigned(SIZE);
    const out = new Map<string, Buffer>();
    for (const tile of tilesForSize(SIZE)) out.set(tilePath(tile), (await tiles.tile(auditor, tilePath(tile))).bytes);
    return out;
  }

  it('nodes, tiles and proofs are byte-identical after compaction; rows shrink to the partial tiles', async () => {
    const nodesBefore = await selectNodes(app.pool, probeIds);
    for (const id of probeIds) expect(nodesBefore.get(nodeKey(id)), nodeKey(id)).toEqual(all.get(nodeKey(id)));
    const tilesBefore = await tilesNow();

    expect(await compactAll(app.pool)).toBe(Math.floor(SIZE / 256) + 1);
    const counts = (await query<{ nodes: number; tiles: number }>(url, 'SELECT (SELECT count(*)::int FROM merkle_nodes) AS nodes, (SELECT count(*)::int FROM merkle_tiles) AS tiles'))[0]!;
    expect(counts.tiles).toBe(Math.floor(SIZE / 256) + 1);
    expect(counts.nodes).toBeLessThan(1_000); // from 2·SIZE: only nodes of the partial tiles stay rows

    const nodesAfter = await selectNodes(app.pool, probeIds);
    expect(nodesAfter.size).toBe(new Set(probeIds.map(nodeKey)).size);
    for (const id of probeIds) expect(nodesAfter.get(nodeKey(id)), nodeKey(id)).toEqual(all.get(nodeKey(id)));
    const tilesAfter = await tilesNow();
    expect([...tilesAfter.keys()]).toEqual([...tilesBefore.keys()]);
    for (const [p, b] of tilesBefore) expect(tilesAfter.get(p)!.equals(b), p).toBe(true);
    for (const i of [0, 300, 65_535, SIZE - 1]) {
      const proof = inclusionProof(i, SIZE, await selectNodes(app.pool, inclusionProofNodes(i, SIZE)));
      expect(verifyInclusion(hashes[i]!, i, SIZE, proof, rootFromLeafHashes(hashes))).toBe(true);
    }
    // A partial tile of an older signed size, its full tile now compacted: the full tile's first W hashes.
    const tiles = new TilesService(app.db, { verifiers: [], checkpoint: async () => '' });
    tiles.noteSigned(SIZE);
    for (const [level, index, width] of [[0, 0, 100], [0, 3, 1], [1, 0, 255]] as const) {
      const got = (await tiles.tile(auditor, tilePath({ level, index, width }))).bytes;
      expect(got.equals(tilesBefore.get(tilePath({ level, index, width: 256 }))!.subarray(0, width * 32)), `${level}/${index}.p/${width}`).toBe(true);
    }
    expect(await compactFullTiles(app.pool)).toBe(0); // nothing left to do
  }, 400_000);

  it('the runtime role cannot delete nodes or write tiles (42501)', async () => {
    await expect(app.pool.query('DELETE FROM merkle_nodes WHERE level = 0')).rejects.toMatchObject({ code: '42501' });
    await expect(app.pool.query(`INSERT INTO merkle_tiles (level, idx, hashes) VALUES (5, 0, decode(repeat('00', 8192), 'hex'))`)).rejects.toMatchObject({ code: '42501' });
    await expect(app.pool.query('DELETE FROM merkle_tiles')).rejects.toMatchObject({ code: '42501' });
    await expect(app.pool.query('UPDATE merkle_tiles SET hashes = hashes')).rejects.toMatchObject({ code: '42501' });
    // MAINTAIN (drizzle/0015, for the compactor's VACUUM) gives no way to remove rows.
    await expect(app.pool.query('TRUNCATE merkle_nodes')).rejects.toMatchObject({ code: '42501' });
  });

  it('the owner\'s UPDATE / DELETE / TRUNCATE of merkle_nodes are refused as before; the runtime role cannot use the compaction flag', async () => {
    await withClient(url, async (c) => {
      await expect(c.query('DELETE FROM merkle_nodes WHERE level = 0 AND idx = $1', [SIZE - 1])).rejects.toThrow(/append-only/);
      const id = { level: 3, index: 5 }; // compacted: planted back, it stays (not even its true hash may be removed by hand)
      await c.query('INSERT INTO merkle_nodes (level, idx, hash) VALUES ($1, $2, $3)', [id.level, id.index, all.get(nodeKey(id))]);
      await expect(c.query('DELETE FROM merkle_nodes WHERE level = $1 AND idx = $2', [id.level, id.index])).rejects.toThrow(/append-only/);
      await expect(c.query('UPDATE merkle_nodes SET hash = hash WHERE level = $1 AND idx = $2', [id.level, id.index])).rejects.toThrow(/append-only/);
      await expect(c.query('TRUNCATE merkle_nodes')).rejects.toThrow(/append-only/);
      await expect(c.query('DELETE FROM merkle_tiles')).rejects.toThrow(/append-only/);
    });
    const client = await app.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query("SET LOCAL paylog.compacting_tile = 'on'");
      await expect(client.query('DELETE FROM merkle_nodes WHERE level = 0')).rejects.toMatchObject({ code: '42501' });
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }
  });
});

describe('the compactor reclaims the rows it removed (drizzle/0015)', () => {
  it('after a few tiles it vacuums merkle_nodes as the runtime role', async () => {
    const size = 9 * 256 + 5;
    const { newNodes, root } = appendLeaves(0, [], Array.from({ length: size }, (_, i) => hashLeaf(Buffer.from(`leaf ${i}`))));
    const url = await newTestDatabase();
    await applyMigrations(url);
    await withClient(url, async (c) => {
      // The ~4,600 inserted node rows pass autovacuum's insert threshold: an autovacuum of merkle_nodes
      // running when the compactor asks makes its VACUUM (SKIP_LOCKED) skip, and this count stay 0.
      await c.query('ALTER TABLE merkle_nodes SET (autovacuum_enabled = false)');
      await c.query('INSERT INTO merkle_nodes (level, idx, hash) SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bytea[])', [newNodes.map((n) => n.level), newNodes.map((n) => n.index), newNodes.map((n) => n.hash)]);
      await c.query('INSERT INTO tree_heads (size, root_hash) VALUES ($1, $2)', [size, root]);
    });
    const app = openAppDatabase(url);
    try {
      // Vacuums run so far (dead-row counts are flushed by backends lazily: not compared).
      const vacuums = async () => (await query<{ n: number }>(url, "SELECT vacuum_count::int AS n FROM pg_stat_user_tables WHERE relname = 'merkle_nodes'"))[0]!.n;
      expect(await vacuums()).toBe(0);
      const errors: unknown[] = [];
      const compactor = new TileCompactor(app.pool, (e) => errors.push(e));
      compactor.schedule();
      await compactor.close();
      expect(errors).toEqual([]);
      expect((await query<{ n: number }>(url, 'SELECT count(*)::int AS n FROM merkle_tiles'))[0]!.n).toBe(9);
      expect(await vacuums()).toBe(1); // without MAINTAIN PostgreSQL skips it with a warning: 0
    } finally {
      await app.close();
    }
  });
});

describe('a tile whose stored nodes disagree', () => {
  it('is not compacted: the function raises and every row stays', async () => {
    const url = await newTestDatabase();
    await applyMigrations(url);
    const hashes = Array.from({ length: 300 }, (_, i) => hashLeaf(Buffer.from(`x ${i}`)));
    const { newNodes, root } = appendLeaves(0, [], hashes);
    const bad = newNodes.find((n) => n.level === 3 && n.index === 7)!;
    bad.hash = Buffer.from(bad.hash);
    bad.hash[0] = bad.hash[0]! ^ 1;
    await withClient(url, async (c) => {
      await c.query('INSERT INTO merkle_nodes (level, idx, hash) SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bytea[])', [newNodes.map((n) => n.level), newNodes.map((n) => n.index), newNodes.map((n) => n.hash)]);
      await c.query('INSERT INTO tree_heads (size, root_hash) VALUES ($1, $2)', [300, root]);
    });
    const app = openAppDatabase(url);
    try {
      await expect(compactFullTiles(app.pool)).rejects.toMatchObject({ code: 'XX001' });
      const counts = (await query<{ nodes: number; tiles: number }>(url, 'SELECT (SELECT count(*)::int FROM merkle_nodes) AS nodes, (SELECT count(*)::int FROM merkle_tiles) AS tiles'))[0]!;
      expect(counts).toEqual({ nodes: newNodes.length, tiles: 0 });
    } finally {
      await app.close();
    }
  });
});

describe('compacting a tile reads only that tile\'s rows (drizzle/0026)', () => {
  it('with eight more full tiles stored as rows beside it, compacting tile 0 reads about its own 511 rows, and stores it', async () => {
    const url = await newTestDatabase();
    await applyMigrations(url);
    const size = 9 * 256;
    const { newNodes, root } = appendLeaves(0, [], Array.from({ length: size }, (_, i) => hashLeaf(Buffer.from(`r ${i}`))));
    await withClient(url, async (c) => {
      await c.query('INSERT INTO merkle_nodes (level, idx, hash) SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bytea[])', [newNodes.map((n) => n.level), newNodes.map((n) => n.index), newNodes.map((n) => n.hash)]);
      await c.query('INSERT INTO tree_heads (size, root_hash) VALUES ($1, $2)', [size, root]);
      await c.query('ANALYZE merkle_nodes');
    });
    const app = openAppDatabase(url);
    try {
      const c = await app.pool.connect();
      try {
        // As the service calls it: the runtime role, a connection that plans every statement afresh.
        await c.query('BEGIN');
        expect((await c.query('SELECT paylog_compact_tile(0, 0) AS ok')).rows[0].ok).toBe(true);
        const read = (await c.query("SELECT (coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0))::int AS n FROM pg_stat_xact_user_tables WHERE relname = 'merkle_nodes'")).rows[0].n as number;
        await c.query('COMMIT');
        // The tile's 511 nodes read for the check (each level and the one below it) and for the delete: a
        // few times 511. Reading whole levels (what migration 0012's statements did) is 9 tiles' worth.
        expect(read).toBeGreaterThan(0);
        expect(read).toBeLessThan(4 * 511);
      } finally {
        c.release();
      }
      const counts = (await query<{ tiles: number; nodes: number }>(url, 'SELECT (SELECT count(*)::int FROM merkle_tiles) AS tiles, (SELECT count(*)::int FROM merkle_nodes WHERE level < 8 AND idx < (256 >> level)) AS nodes'))[0]!;
      expect(counts).toEqual({ tiles: 1, nodes: 0 });
    } finally {
      await app.close();
    }
  });
});

describe('a running service: compaction changes nothing an auditor sees', () => {
  let t: TestPaylog;
  let client: LogClient;
  beforeAll(async () => {
    t = await startTestPaylog();
    const a = t.paylog.devPki!.principals['auditor']!;
    client = LogClient.fromFiles(t.paylog.url, t.paylog.devPki!.caPath, a.certPath, a.keyPath);
  });
  afterAll(async () => {
    client?.close();
    await t?.stop();
  });

  it('entries (with their nodes), proofs and verify-log agree before and after', async () => {
    let sent = 0;
    const worker = async () => {
      while (sent < 560) {
        sent += 1;
        expect((await t.call('checkout', 'POST', '/v1/transactions', cardTransaction())).status).toBe(201);
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    const size = Number((await query<{ s: string }>(t.databaseUrl, 'SELECT max(size) AS s FROM tree_heads'))[0]!.s);
    const read = async () => {
      const entries = await t.call('auditor', 'GET', `/v1/log/entries?start=0&end=${size}`);
      const proof = await t.call('auditor', 'GET', `/v1/log/proof/inclusion?index=3&treeSize=${size}`);
      const consistency = await t.call('auditor', 'GET', `/v1/log/proof/consistency?from=100&to=${size}`);
      return [entries.status, entries.text, proof.status, proof.text, consistency.status, consistency.text];
    };
    const before = await read();
    expect(before[0]).toBe(200);
    expect(before[2]).toBe(200);
    expect(before[4]).toBe(200);
    await t.paylog.checkpoints.publish();
    await compactAll(t.paylog.database.pool);
    expect((await query<{ n: number }>(t.databaseUrl, 'SELECT count(*)::int AS n FROM merkle_tiles'))[0]!.n).toBe(Math.floor(size / 256));
    expect(await read()).toEqual(before);
    const v = await verifyRemoteLog(client, { verifiers: toNoteVerifiers((await client.keys()).vkeys) });
    expect(v.ok, JSON.stringify(v.failures)).toBe(true);
    expect(v.treeSize).toBe(size);
  }, 120_000);
});
