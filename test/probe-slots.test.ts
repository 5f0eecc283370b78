/**
 * Issue 20, storage: the probe limit's compact rows (drizzle/0013). A database with probe rows of
 * the current hour from before the migration keeps them: the limit stays exact across it (a
 * counted transaction is still counted, a retry still keeps its slot).
 */
import { describe, expect, it } from 'vitest';
import { newTestDatabase } from './helpers/paylog.js';
import { withClient } from './helpers/db.js';
import { migrateUpTo } from './helpers/migrate.js';
import { applyMigrations } from '../src/db/connection.js';

describe('submission_probes → submission_probe_slots (migration 0013)', () => {
  it('rows of the hour carry over: the count and the retries are what they were', async () => {
    const url = await newTestDatabase();
    await migrateUpTo(url, 12);
    const hour = new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000);
    const served = Buffer.alloc(32, 7);
    await withClient(url, async (c) => {
      for (const id of ['a', 'b']) await c.query('INSERT INTO submission_probes (principal, served_mac, transaction_id, window_start) VALUES ($1, $2, $3, $4)', ['checkout:shop', served, id, hour]);
    });
    await applyMigrations(url);
    await withClient(url, async (c) => {
      const admit = async (id: string, limit: number) => (await c.query('SELECT paylog_probe_admit($1, $2, $3, $4, $5) AS ok', ['checkout:shop', served, id, hour, limit])).rows[0].ok as boolean;
      expect(await admit('c', 2)).toBe(false); // two counted before the migration: full at 2
      expect(await admit('a', 2)).toBe(true); // a retry keeps its slot
      expect(await admit('c', 3)).toBe(true);
      expect(await admit('d', 3)).toBe(false);
      // Another principal or other served fields: another group.
      expect((await c.query('SELECT paylog_probe_admit($1, $2, $3, $4, 1) AS ok', ['checkout:other', served, 'x', hour])).rows[0].ok).toBe(true);
      expect((await c.query('SELECT paylog_probe_admit($1, $2, $3, $4, 1) AS ok', ['checkout:shop', Buffer.alloc(32, 8), 'x', hour])).rows[0].ok).toBe(true);
      expect((await c.query('SELECT count(*)::int AS n FROM submission_probe_slots')).rows[0].n).toBe(5);
    });
  });
});

describe('submission_probe_slots (hour, slot) → (grp, hour, tx) (migration 0014)', () => {
  it('rows of the hour carry over; a retry keeps its row, a new id counts, another group is apart', async () => {
    const url = await newTestDatabase();
    await migrateUpTo(url, 13);
    const hour = new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000);
    const served = Buffer.alloc(32, 7);
    const admit = (c: import('pg').Client, id: string, limit: number, principal = 'checkout:shop', s = served) =>
      c.query('SELECT paylog_probe_admit($1, $2, $3, $4, $5) AS ok', [principal, s, id, hour, limit]).then((r) => r.rows[0].ok as boolean);
    await withClient(url, async (c) => {
      expect(await admit(c, 'a', 5)).toBe(true);
      expect(await admit(c, 'b', 5)).toBe(true);
    });
    await migrateUpTo(url, 14); // the layout 0014 made (0022 changed it again: test/storage-upgrade.test.ts)
    await withClient(url, async (c) => {
      expect(await admit(c, 'c', 2)).toBe(false); // two counted before the migration: full at 2
      expect(await admit(c, 'a', 2)).toBe(true); // a retry keeps its row
      expect(await admit(c, 'b', 2)).toBe(true);
      expect(await admit(c, 'c', 3)).toBe(true);
      expect(await admit(c, 'c', 3)).toBe(true); // retried: not counted again
      expect(await admit(c, 'd', 3)).toBe(false);
      expect(await admit(c, 'x', 1, 'checkout:other')).toBe(true);
      expect(await admit(c, 'x', 1, 'checkout:shop', Buffer.alloc(32, 8))).toBe(true);
      const rows = (await c.query('SELECT pg_typeof(grp)::text AS g, octet_length(tx) AS t, count(*)::int AS n FROM submission_probe_slots GROUP BY 1, 2')).rows;
      expect(rows).toEqual([{ g: 'bigint', t: 16, n: 5 }]);
      // The group is the first 8 bytes of the digest 0013 stored 16 of (its rows were carried over).
      expect((await c.query("SELECT count(DISTINCT grp)::int AS n FROM submission_probe_slots WHERE grp = paylog_probe_group('checkout:shop', $1)", [served])).rows[0].n).toBe(1);
      // One row per (hour, group, transaction): the retries above added none.
      expect((await c.query('SELECT count(*)::int AS n FROM (SELECT DISTINCT hour, grp, tx FROM submission_probe_slots) x')).rows[0].n).toBe(5);
    });
  });
});

describe('paylog_probe_admit plans its queries once per connection (migration 0017)', () => {
  it('runs with generic plans whatever the session asks, and admits as before', async () => {
    const url = await newTestDatabase();
    await applyMigrations(url);
    await withClient(url, async (c) => {
      const conf = (await c.query("SELECT proconfig FROM pg_proc WHERE proname = 'paylog_probe_admit'")).rows[0].proconfig as string[];
      expect(conf).toContain('plan_cache_mode=force_generic_plan');
      // The service's sessions plan afresh (src/db/connection.ts); the function overrides it.
      await c.query('SET plan_cache_mode = force_custom_plan');
      const hour = new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000);
      const admit = async (id: string) => (await c.query('SELECT paylog_probe_admit($1, $2, $3, $4, 2) AS ok', ['checkout:shop', Buffer.alloc(32, 9), id, hour])).rows[0].ok as boolean;
      // More than five calls: past the point where a plan cache would switch to a generic plan.
      expect([await admit('a'), await admit('b'), await admit('c'), await admit('a'), await admit('b'), await admit('d'), await admit('c')]).toEqual([true, true, false, true, true, false, false]);
      expect((await c.query('SHOW plan_cache_mode')).rows[0].plan_cache_mode).toBe('force_custom_plan');
    });
  });
});

describe('paylog_probe_admit never plans a sequential scan (migration 0020)', () => {
  it('on tiny, analyzed tables and a connection forcing custom plans (as the pool does): index scans only, same decisions', async () => {
    const url = await newTestDatabase();
    await applyMigrations(url);
    const hour = new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000);
    const served = Buffer.alloc(32, 7);
    await withClient(url, async (c) => {
      const admit = (id: string, limit: number) => c.query('SELECT paylog_probe_admit($1, $2, $3, $4, $5) AS ok', ['checkout:shop', served, id, hour, limit]).then((r) => r.rows[0].ok as boolean);
      await c.query('SET plan_cache_mode = force_custom_plan');
      for (const id of ['a', 'b']) expect(await admit(id, 3)).toBe(true);
      // Tables this small are cheapest to scan sequentially: a plan made now and kept would be one.
      await c.query('ANALYZE submission_probe_slots');
      await c.query('ANALYZE transactions');
      await c.query('BEGIN');
      expect(await admit('c', 3)).toBe(true);
      expect(await admit('d', 3)).toBe(false); // full at 3
      expect(await admit('a', 3)).toBe(true); // a retry keeps its row
      for (let i = 0; i < 5; i++) expect(await admit(`e${i}`, 3)).toBe(false);
      const scans = (await c.query("SELECT relname, seq_scan::int AS seq, idx_scan::int AS idx FROM pg_stat_xact_user_tables WHERE relname IN ('submission_probe_slots', 'transactions') ORDER BY relname")).rows;
      await c.query('COMMIT');
      expect(scans).toEqual([
        { relname: 'submission_probe_slots', seq: 0, idx: expect.any(Number) },
        { relname: 'transactions', seq: 0, idx: expect.any(Number) },
      ]);
      expect(scans.every((s: { idx: number }) => s.idx > 0)).toBe(true);
    });
  });
});

describe('paylog_probe_admit computes its group key inline (migration 0025)', () => {
  it('the rows it writes carry exactly paylog_probe_key(principal, served, hour), for several principals, fields and hours; its settings stay', async () => {
    const url = await newTestDatabase();
    await applyMigrations(url);
    const thisHour = Math.floor(Date.now() / 3_600_000) * 3_600_000;
    await withClient(url, async (c) => {
      const conf = (await c.query("SELECT proconfig, prosrc FROM pg_proc WHERE proname = 'paylog_probe_admit'")).rows[0] as { proconfig: string[]; prosrc: string };
      expect(conf.proconfig).toEqual(expect.arrayContaining(['plan_cache_mode=force_generic_plan', 'enable_seqscan=off']));
      // No call of a SQL function with a SET clause (re-planned in every transaction) is left in the body.
      expect(conf.prosrc).not.toMatch(/paylog_probe_(key|group)\s*\(/);
      let n = 0;
      for (const principal of ['checkout:shop', 'checkout:ünïcode-shop', 'c']) {
        for (const served of [Buffer.alloc(32, 7), Buffer.from('00ff'.repeat(16), 'hex'), Buffer.alloc(32, 0xff)]) {
          // Hours whose tags (hour mod 256) differ, and one 256 hours away (same tag).
          for (const hour of [thisHour, thisHour - 3_600_000, thisHour - 256 * 3_600_000, Date.UTC(2001, 0, 1, 23)]) {
            const id = `t${n++}`;
            expect((await c.query('SELECT paylog_probe_admit($1, $2, $3, $4, 100) AS ok', [principal, served, id, new Date(hour)])).rows[0].ok).toBe(true);
            const row = (
              await c.query(
                "SELECT s.grp::text AS grp, paylog_probe_key($1, $2, $3)::text AS expected FROM submission_probe_slots s WHERE s.tx = encode(substring(sha256(convert_to($4, 'UTF8')) FROM 1 FOR 16), 'hex')::uuid",
                [principal, served, new Date(hour), id],
              )
            ).rows;
            expect(row).toHaveLength(1);
            expect(row[0].grp).toBe(row[0].expected);
          }
        }
      }
    });
  });
});
