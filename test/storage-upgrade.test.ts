/**
 * Issue 20, storage (branch storage4): upgrades of an existing database. Migration 0021 stops
 * writing log_entries.created_at / tree_heads.created_at: rows from before keep their time,
 * new rows leave it NULL (and are 8 bytes shorter), and the tables refuse what they refused.
 */
import { describe, expect, it } from 'vitest';
import { newTestDatabase } from './helpers/paylog.js';
import { withClient } from './helpers/db.js';
import { migrateUpTo } from './helpers/migrate.js';
import { applyMigrations } from '../src/db/connection.js';

describe('log_entries / tree_heads created_at no longer written (migration 0021)', () => {
  it('old rows keep their time, new rows store NULL and are 8 bytes shorter, the tables stay append-only', async () => {
    const url = await newTestDatabase();
    await migrateUpTo(url, 19);
    const leaf = Buffer.alloc(300, 7);
    const root = Buffer.alloc(32, 1);
    const mac = Buffer.alloc(32, 2);
    await withClient(url, async (c) => {
      await c.query('INSERT INTO log_entries (idx, leaf) VALUES (0, $1)', [leaf]);
      await c.query('INSERT INTO tree_heads (size, root_hash, mac) VALUES (1, $1, $2)', [root, mac]);
    });
    await applyMigrations(url);
    await withClient(url, async (c) => {
      // The insert the appender makes now (src/log/append/pg-driver.ts) names no created_at.
      await c.query('INSERT INTO log_entries (idx, leaf) VALUES (1, $1)', [leaf]);
      await c.query('INSERT INTO tree_heads (size, root_hash, mac) VALUES (2, $1, $2)', [root, mac]);
      const entries = (await c.query('SELECT idx::int AS idx, created_at IS NOT NULL AS timed, pg_column_size(e.*) AS bytes FROM log_entries e ORDER BY idx')).rows;
      expect(entries.map((r) => [r.idx, r.timed])).toEqual([[0, true], [1, false]]);
      expect(entries[0].bytes - entries[1].bytes).toBeGreaterThanOrEqual(8);
      const heads = (await c.query('SELECT size::int AS size, created_at IS NOT NULL AS timed, pg_column_size(h.*) AS bytes FROM tree_heads h ORDER BY size')).rows;
      expect(heads.map((r) => [r.size, r.timed])).toEqual([[1, true], [2, false]]);
      expect(heads[0].bytes - heads[1].bytes).toBeGreaterThanOrEqual(8);
      // A service rolled back to before 0021 still inserts its rows with a time.
      await c.query('INSERT INTO log_entries (idx, leaf, created_at) VALUES (2, $1, now())', [leaf]);
      // Append-only as before (ENABLE ALWAYS triggers: even the owner is refused).
      for (const sql of ['UPDATE log_entries SET created_at = now()', 'DELETE FROM log_entries', 'UPDATE tree_heads SET created_at = now()', 'DELETE FROM tree_heads']) {
        await expect(c.query(sql), sql).rejects.toThrow();
      }
    });
  });
});
