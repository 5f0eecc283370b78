/**
 * Issue 20: kept index plans (src/db/plans.ts). A named lookup run through
 * `queryKeepingIndexPlans` keeps one plan per connection, made while its table was tiny and
 * analyzed; as the table grows (no ANALYZE in between) that plan must still be an index scan —
 * a plain generic plan made at that moment is a sequential scan of the whole table.
 */
import { describe, expect, it } from 'vitest';
import { newTestDatabase } from './helpers/paylog.js';
import { withClient, backendsGone } from './helpers/db.js';
import { openAppDatabase, type AppDatabase } from '../src/db/connection.js';
import { queryKeepingIndexPlans } from '../src/db/plans.js';

const LOOKUP = { name: 'plans_test_lookup', text: 'SELECT v FROM plans_t WHERE k = $1' };

async function seqScansAfterGrowth(run: (db: AppDatabase, k: number) => Promise<unknown>): Promise<number> {
  const url = await newTestDatabase();
  await withClient(url, async (c) => {
    await c.query('CREATE TABLE plans_t (k integer NOT NULL, v text) WITH (autovacuum_enabled = false)');
    await c.query('CREATE INDEX plans_t_k ON plans_t (k)');
    await c.query("INSERT INTO plans_t SELECT g, 'v' FROM generate_series(1, 3) g");
    await c.query('ANALYZE plans_t');
  });
  const db = openAppDatabase(url, { role: null, max: 1 });
  let closed = false;
  try {
    for (let i = 1; i <= 3; i++) await run(db, i); // the plan is made and kept on this connection
    await withClient(url, (c) => c.query("INSERT INTO plans_t SELECT g, 'v' FROM generate_series(4, 20000) g"));
    const before = await withClient(url, (c) => c.query("SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'plans_t'"));
    for (let i = 0; i < 10; i++) await run(db, 19_000 + i);
    await db.close(); // its backend reports its statistics as it exits
    closed = true;
    await backendsGone(url); // its statistics are written once its backend has exited
    const after = await withClient(url, (c) => c.query("SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'plans_t'"));
    return Number(after.rows[0].seq_scan) - Number(before.rows[0].seq_scan);
  } finally {
    if (!closed) await db.close();
  }
}

describe('kept index plans (src/db/plans.ts)', () => {
  it('a plan kept from a tiny table is still an index scan once the table has grown', async () => {
    expect(await seqScansAfterGrowth((db, k) => queryKeepingIndexPlans(db, { ...LOOKUP, values: [k] }))).toBe(0);
  });

  it('the same lookup with a plain kept generic plan scans the table (what the setting prevents)', async () => {
    const plain = async (db: AppDatabase, k: number) => {
      const c = await db.pool.connect();
      try {
        await c.query('BEGIN; SET LOCAL plan_cache_mode = force_generic_plan');
        await c.query({ ...LOOKUP, values: [k] });
        await c.query('COMMIT');
      } finally {
        c.release();
      }
    };
    expect(await seqScansAfterGrowth(plain)).toBeGreaterThan(0);
  });

  it("a failed statement rejects with its own error; the settings are the kept-plan pool's only", async () => {
    const url = await newTestDatabase();
    const db = openAppDatabase(url, { role: null, max: 1 });
    try {
      await expect(queryKeepingIndexPlans(db, { text: 'SELECT 1/0' })).rejects.toMatchObject({ code: '22012' });
      const r = await queryKeepingIndexPlans(db, { text: 'SELECT current_setting($1) AS s', values: ['enable_seqscan'] });
      expect(r.rows[0].s).toBe('off');
      expect((await db.pool.query("SELECT current_setting('enable_seqscan') AS s")).rows[0].s).toBe('on');
    } finally {
      await db.close();
    }
  });
});
