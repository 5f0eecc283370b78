/**
 * Issue 20, storage (migration 0027): `transactions` is keyed by log index, and transaction_id
 * is unique through `EXCLUDE USING hash (transaction_id WITH =)` — a hash index (4 bytes per row)
 * instead of a btree holding every id. What must hold:
 * - every lookup by transaction_id still reads an index, also through the plans the service keeps
 *   per connection (src/db/plans.ts) made while the table was tiny: the append's batch-state read
 *   (`= ANY`, a bitmap scan of the hash index), the record and assignment reads of release and
 *   reads, the forward's first reads, the probe function;
 * - a second row with an id already present is refused, whoever inserts it (the runtime role
 *   behind the service's back) and also when the first is not yet committed; ids whose hashes
 *   collide are told apart by value.
 */
import { describe, expect, it } from 'vitest';
import type pg from 'pg';
import { newTestDatabase } from './helpers/paylog.js';
import { backendsGone, query, withClient } from './helpers/db.js';
import { applyMigrations, openAppDatabase } from '../src/db/connection.js';
import { LogAppender } from '../src/log/appender.js';
import { readAssignment, readShredded, readSubmissionPrecheck, readTransactionRow } from '../src/services/transaction-queries.js';
import { readFirst } from '../src/services/forward/first-reads.js';

const HASH_INDEX = 'transactions_transaction_id_unique';
const GROWN_ROWS = 30_000;

const submission = (id: string, n: number) => ({
  kind: 'transaction' as const,
  leaf: Buffer.from(`leaf ${id}`),
  createdAt: new Date('2026-12-07T10:00:00Z'),
  transaction: { transactionId: id, requestMac: Buffer.alloc(16, n) },
  dataKey: { wrappedKey: Buffer.alloc(80, n), kmsKeyId: 'arn:k1' },
});

async function transactionScans(url: string): Promise<{ seq: number; hash: number }> {
  return await withClient(url, async (c) => {
    const t = (await c.query("SELECT seq_scan::int AS n FROM pg_stat_user_tables WHERE relname = 'transactions'")).rows[0].n as number;
    const i = ((await c.query('SELECT idx_scan::int AS n FROM pg_stat_user_indexes WHERE indexrelname = $1', [HASH_INDEX])).rows[0]?.n ?? 0) as number;
    return { seq: t, hash: i };
  });
}

/** As the runtime role, expecting SQLSTATE `code` (the connection's transaction, if any, survives). */
async function refused(c: pg.Client, sql: string, values: unknown[], code: string): Promise<void> {
  await c.query('SAVEPOINT s');
  await expect(c.query(sql, values), sql).rejects.toMatchObject({ code });
  await c.query('ROLLBACK TO SAVEPOINT s');
}

/** Resolves once backend `pid` waits for a lock (bounded: a loaded machine can take a while to send its statement). */
async function waitsForLock(url: string, pid: number): Promise<void> {
  const deadline = Date.now() + 60_000;
  while ((await query<{ n: number }>(url, 'SELECT count(*)::int AS n FROM pg_locks WHERE pid = $1 AND NOT granted', [pid]))[0]!.n === 0) {
    if (Date.now() > deadline) throw new Error(`backend ${pid} never waited for a lock`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('transaction_id unique by a hash index, log_index the primary key (migration 0027)', () => {
  it('lookups by transaction_id keep using the hash index once the table has grown, through kept plans made while it was tiny', async () => {
    const url = await newTestDatabase();
    await applyMigrations(url);
    await withClient(url, async (c) => {
      await c.query('ALTER TABLE transactions SET (autovacuum_enabled = false)'); // no ANALYZE behind the test's back
      await c.query('ANALYZE transactions');
    });
    const db = openAppDatabase(url, { max: 1 }); // one connection: every kept plan is made on it while the table is tiny
    const appender = new LogAppender(db);
    const macKey = Buffer.alloc(32, 9);
    const hour = new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000);
    const lookups = async (id: string) => {
      const row = await readTransactionRow(db.pool, id);
      const assigned = await readAssignment(db.pool, id, 'acme');
      const shredded = await readShredded(db.pool, id);
      const pre = await readSubmissionPrecheck(db.pool, { processor: 'acme', transactionId: id, now: new Date() });
      const first = await readFirst(db, macKey, { transactionId: id, key: 'k' });
      const admitted = (await db.pool.query('SELECT paylog_probe_admit($1, $2, $3, $4, 1) AS ok', ['checkout:shop', Buffer.alloc(32, 1), id, hour])).rows[0].ok as boolean;
      return { found: row?.transaction_id ?? null, assigned: assigned !== undefined, shredded, pre: pre.transaction_id, first: !first.record.ok || first.record.value !== null, admitted }; // first: its row was read (a grown row has no leaf: read, then refused)
    };
    let closed = false;
    try {
      for (const [i, id] of ['a1', 'a2', 'a3'].entries()) expect((await appender.append(submission(id, i + 1))).status).toBe('appended');
      expect((await lookups('a1')).found).toBe('a1');
      await lookups('nope-0');

      await withClient(url, (c) =>
        c.query(`INSERT INTO transactions (transaction_id, log_index, request_mac) SELECT 'grown-' || g, 1000000 + g, '\\x00' FROM generate_series(1, ${GROWN_ROWS}) g`),
      );
      await db.pool.query('SELECT pg_stat_force_next_flush()'); // the tiny table's scans (custom plans may scan 3 rows) are counted before
      await new Promise((r) => setTimeout(r, 300));
      const before = await transactionScans(url);

      // The batch-state read (`transaction_id = ANY($1)`): new ids, and a replay told by its stored MAC.
      const outcomes = await Promise.all([appender.append(submission('b1', 11)), appender.append(submission('b2', 12)), appender.append(submission('a2', 2))]);
      expect(outcomes.map((o) => o.status)).toEqual(['appended', 'appended', 'replayed']);
      expect(await lookups('grown-777')).toEqual({ found: 'grown-777', assigned: true, shredded: true, pre: 'grown-777', first: true, admitted: true });
      expect(await lookups('b1')).toMatchObject({ found: 'b1', shredded: false, pre: 'b1', first: true, admitted: true });
      expect(await lookups('nope-1')).toMatchObject({ found: null, pre: null, first: false });

      await appender.close();
      await db.close(); // its backends report their statistics as they exit…
      closed = true;
      await backendsGone(url); // …which pool.end() does not wait for (a fixed pause could end first)
      const after = await transactionScans(url);
      expect(after.seq - before.seq).toBe(0);
      expect(after.hash - before.hash).toBeGreaterThanOrEqual(3 * 6); // three ids looked up six ways (the batch read and the inserts' checks add more)
    } finally {
      if (!closed) {
        await appender.close();
        await db.close();
      }
    }
  });

  it('a duplicate transaction_id inserted behind the service by the runtime role is refused (23P01), also while the first insert is uncommitted; colliding hashes are told apart', async () => {
    const url = await newTestDatabase();
    await applyMigrations(url);
    await withClient(url, async (a) => {
      await withClient(url, async (b) => {
        await a.query('SET ROLE paylog_app');
        await b.query('SET ROLE paylog_app');
        const bPid = (await b.query('SELECT pg_backend_pid() AS p')).rows[0].p as number;
        const insert = 'INSERT INTO transactions (transaction_id, log_index, request_mac) VALUES ($1, $2, $3)';
        await a.query(insert, ['d1', 1, Buffer.alloc(16)]);
        await a.query('BEGIN');
        await refused(a, insert, ['d1', 2, Buffer.alloc(16, 1)], '23P01');
        await refused(a, insert, ['d9', 1, Buffer.alloc(16, 1)], '23505'); // one row per log index (the primary key)
        await a.query('ROLLBACK');

        // A concurrent insert of the same id waits for the first (not merely runs after it), then
        // is refused when the first commits, and goes in when the first rolls back.
        const againWhileFirstOpen = async (id: string, first: number, second: number, end: 'COMMIT' | 'ROLLBACK') => {
          await a.query('BEGIN');
          await a.query(insert, [id, first, Buffer.alloc(16)]);
          const outcome = b.query(insert, [id, second, Buffer.alloc(16, 1)]).then(
            () => 'inserted',
            (e: { code?: string }) => e.code,
          );
          await waitsForLock(url, bPid);
          await a.query(end);
          return await outcome;
        };
        expect(await againWhileFirstOpen('d2', 3, 4, 'COMMIT')).toBe('23P01');
        expect(await againWhileFirstOpen('d3', 5, 6, 'ROLLBACK')).toBe('inserted');

        // Two ids with one 32-bit hash (what the index stores): both are accepted, each found by its own value.
        const pair = (await a.query("SELECT array_agg(s ORDER BY s) AS ids FROM (SELECT 'c' || g AS s FROM generate_series(1, 300000) g) x GROUP BY hashtext(s) HAVING count(*) > 1 LIMIT 1")).rows[0].ids as string[];
        expect(pair.length).toBeGreaterThanOrEqual(2);
        await a.query(insert, [pair[0], 10, Buffer.alloc(16)]);
        await a.query(insert, [pair[1], 11, Buffer.alloc(16)]);
        await a.query('BEGIN');
        await refused(a, insert, [pair[1], 12, Buffer.alloc(16)], '23P01');
        await a.query('ROLLBACK');
        const found = (await a.query('SELECT transaction_id, log_index::int AS i FROM transactions WHERE transaction_id = ANY($1) ORDER BY 2', [pair])).rows;
        expect(found).toEqual([
          { transaction_id: pair[0], i: 10 },
          { transaction_id: pair[1], i: 11 },
        ]);
        // Append-only as before.
        await a.query('BEGIN');
        await refused(a, 'UPDATE transactions SET transaction_id = $1 WHERE log_index = 1', ['d2'], '42501');
        await refused(a, 'DELETE FROM transactions WHERE log_index = 1', [], '42501');
        await a.query('ROLLBACK');
      });
    });
  });
});
