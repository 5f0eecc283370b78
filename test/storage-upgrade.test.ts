/**
 * Issue 20, storage (branch storage4): upgrades of an existing database. Migration 0021 stops
 * writing log_entries.created_at / tree_heads.created_at: rows from before keep their time,
 * new rows leave it NULL (and are 8 bytes shorter), and the tables refuse what they refused.
 */
import { describe, expect, it } from 'vitest';
import { newTestDatabase } from './helpers/paylog.js';
import { withClient } from './helpers/db.js';
import { migrateUpTo } from './helpers/migrate.js';
import { applyMigrations, openAppDatabase } from '../src/db/connection.js';
import { LogAppender } from '../src/log/appender.js';
import { createHmac } from 'node:crypto';
import { STORED_TREE_HEAD_MAC_BYTES, treeHeadKey, treeHeadMac, treeHeadMacValid } from '../src/log/tree-head.js';
import { epochIdSql, epochRecordCountSql, readTransactionRow } from '../src/services/transaction-queries.js';

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

describe('submission_probe_slots (grp, hour, tx) → (grp with the hour tag, tx uuid) (migration 0022)', () => {
  const HOUR_MS = 3_600_000;
  const hourOf = (ms: number) => new Date(Math.floor(ms / HOUR_MS) * HOUR_MS);

  it('rows of the hour carry over and count; retries keep their row; 48-byte rows; the generic-plan setting stays', async () => {
    const url = await newTestDatabase();
    await migrateUpTo(url, 19);
    const hour = hourOf(Date.now());
    const served = Buffer.alloc(32, 7);
    const admit = (c: import('pg').Client, id: string, limit: number, opts: { principal?: string; s?: Buffer; at?: Date } = {}) =>
      c
        .query('SELECT paylog_probe_admit($1, $2, $3, $4, $5) AS ok', [opts.principal ?? 'checkout:shop', opts.s ?? served, id, opts.at ?? hour, limit])
        .then((r) => r.rows[0].ok as boolean);
    await withClient(url, async (c) => {
      expect(await admit(c, 'a', 5)).toBe(true);
      expect(await admit(c, 'b', 5)).toBe(true);
      expect(await admit(c, 'old', 5, { at: new Date(hour.getTime() - HOUR_MS) })).toBe(true); // last hour's
    });
    await applyMigrations(url);
    await withClient(url, async (c) => {
      const conf = (await c.query("SELECT proconfig FROM pg_proc WHERE proname = 'paylog_probe_admit'")).rows[0].proconfig as string[];
      expect(conf).toContain('plan_cache_mode=force_generic_plan'); // 0017's setting survives the new body
      expect(conf).toContain('enable_seqscan=off'); // and 0020's
      expect(await admit(c, 'c', 2)).toBe(false); // two counted before the migration: full at 2
      expect(await admit(c, 'a', 2)).toBe(true); // a retry keeps its row
      expect(await admit(c, 'b', 2)).toBe(true);
      expect(await admit(c, 'c', 3)).toBe(true);
      expect(await admit(c, 'c', 3)).toBe(true); // retried: not counted again
      expect(await admit(c, 'd', 3)).toBe(false);
      expect(await admit(c, 'x', 1, { principal: 'checkout:other' })).toBe(true); // other groups apart
      expect(await admit(c, 'x', 1, { s: Buffer.alloc(32, 8) })).toBe(true);
      // The next hour is a fresh window; last hour's row (carried over) does not count in it.
      const next = new Date(hour.getTime() + HOUR_MS);
      expect(await admit(c, 'e', 1, { at: next })).toBe(true);
      expect(await admit(c, 'f', 1, { at: next })).toBe(false);
      const rows = (await c.query("SELECT pg_typeof(grp)::text AS g, pg_typeof(tx)::text AS t, pg_column_size(s.*) AS bytes, count(*)::int AS n FROM submission_probe_slots s GROUP BY 1, 2, 3")).rows;
      expect(rows).toEqual([{ g: 'bigint', t: 'uuid', bytes: 48, n: 7 }]); // a, b, c, x, x', old, e
      const columns = (await c.query("SELECT column_name FROM information_schema.columns WHERE table_name = 'submission_probe_slots' ORDER BY ordinal_position")).rows.map((r) => r.column_name);
      expect(columns).toEqual(['grp', 'tx']);

      // The purge of `hour`'s window deletes the hour before, keeps this one and the next (a peer ahead).
      await c.query('SET ROLE paylog_app');
      await c.query('SELECT paylog_probe_purge($1)', [hour]);
      expect((await c.query('SELECT count(*)::int AS n FROM submission_probe_slots')).rows[0].n).toBe(6);
      await c.query('SELECT paylog_probe_purge($1)', [next]);
      expect((await c.query('SELECT count(*)::int AS n FROM submission_probe_slots')).rows[0].n).toBe(1);
      await expect(c.query('UPDATE submission_probe_slots SET tx = tx')).rejects.toMatchObject({ code: '42501' });
      await c.query('RESET ROLE');
    });
  });

  it('the hour tag wraps: tags 127 → 128 and 255 → 0 are one hour apart; a purge deletes only the 128 hours before', async () => {
    const url = await newTestDatabase();
    await applyMigrations(url);
    await withClient(url, async (c) => {
      const served = Buffer.alloc(32, 3);
      const base = Math.floor(Date.now() / HOUR_MS);
      for (const tag of [127, 255]) {
        const h = base - (base % 256) + tag; // an hour whose tag is `tag`
        const at = (d: number) => new Date((h + d) * HOUR_MS);
        await c.query('DELETE FROM submission_probe_slots');
        for (const d of [-129, -128, -1, 0, 1, 127]) await c.query('SELECT paylog_probe_admit($1, $2, $3, $4, 5)', ['checkout:shop', served, `t${d}`, at(d)]);
        // Each hour is its own group, except that hours 256 apart share a tag (-129 and +127).
        const keys = (await c.query('SELECT DISTINCT grp FROM submission_probe_slots')).rows;
        expect(keys.length).toBe(5);
        await c.query('SELECT paylog_probe_purge($1)', [at(0)]);
        // Kept: this hour and the 127 after it; -129 has the tag of +127 (kept: it can only tighten), -128 and -1 are deleted.
        const left = (await c.query('SELECT count(*)::int AS n FROM submission_probe_slots')).rows[0].n;
        expect(left, `tag ${tag}`).toBe(4);
      }
    });
  });
});

describe('a key-wrap window names its epoch; its data_keys rows no longer do (migration 0023)', () => {
  it('windows from before get their epoch; old rows keep theirs; new window rows leave it NULL and read the same; one key reference still required', async () => {
    const url = await newTestDatabase();
    await migrateUpTo(url, 22);
    const EPOCH = 'acme/2026-12/0';
    await withClient(url, async (c) => {
      await c.query(
        `INSERT INTO key_epochs (epoch_id, processor, granularity, period_start, period_end, generation, public_key, wrapped_private_key)
         VALUES ($1, 'acme', 'month', '2026-12-01', '2027-01-01', 0, '\\x00', '\\x00')`,
        [EPOCH],
      );
      for (const i of [1, 2, 3, 4, 5]) await c.query('INSERT INTO transactions (transaction_id, log_index, request_mac) VALUES ($1, $2, $3)', [`t${i}`, i, Buffer.alloc(16)]);
      await c.query("INSERT INTO key_wrap_windows (id, enc) VALUES (7, '\\x0a')");
      await c.query("INSERT INTO data_keys (log_index, window_id, wrapped_key, epoch_id) VALUES (1, 7, '\\x01', $1), (2, 7, '\\x02', $1)", [EPOCH]);
      await c.query("INSERT INTO data_keys (log_index, wrapped_key, epoch_id) VALUES (3, '\\x03', $1)", [EPOCH]);
      await c.query("INSERT INTO data_keys (log_index, wrapped_key, kms_key_id) VALUES (4, '\\x04', 'arn:k1')");
    });
    await applyMigrations(url);
    await withClient(url, async (c) => {
      expect((await c.query('SELECT id::int, epoch_id FROM key_wrap_windows')).rows).toEqual([{ id: 7, epoch_id: EPOCH }]);
      // The append's form now (src/log/append/pg-driver.ts): the window names the epoch, its row does not.
      await c.query("INSERT INTO key_wrap_windows (id, enc, epoch_id) VALUES (8, '\\x0b', $1)", [EPOCH]);
      await c.query("INSERT INTO data_keys (log_index, window_id, wrapped_key) VALUES (5, 8, '\\x05')");
      const read = (await c.query(`SELECT d.log_index::int AS i, ${epochIdSql('d', 'w')} AS epoch FROM data_keys d LEFT JOIN key_wrap_windows w ON w.id = d.window_id ORDER BY 1`)).rows;
      expect(read).toEqual([
        { i: 1, epoch: EPOCH },
        { i: 2, epoch: EPOCH },
        { i: 3, epoch: EPOCH },
        { i: 4, epoch: null },
        { i: 5, epoch: EPOCH },
      ]);
      expect((await c.query(`SELECT ${epochRecordCountSql('$1::text')} AS n`, [EPOCH])).rows[0].n).toBe(4);
      const refused = async (sql: string, code: string) => {
        await c.query('SAVEPOINT s');
        await expect(c.query(sql), sql).rejects.toMatchObject({ code });
        await c.query('ROLLBACK TO SAVEPOINT s');
      };
      await c.query('BEGIN');
      await c.query("INSERT INTO transactions (transaction_id, log_index, request_mac) VALUES ('t6', 6, '\\x00')");
      await refused("INSERT INTO data_keys (log_index, wrapped_key) VALUES (6, '\\x01')", '23514'); // no key reference
      await refused("INSERT INTO data_keys (log_index, window_id, wrapped_key, kms_key_id) VALUES (6, 8, '\\x01', 'arn:k1')", '23514'); // windows are v2 only
      await refused("INSERT INTO data_keys (log_index, wrapped_key, epoch_id, kms_key_id) VALUES (6, '\\x01', 'acme/2026-12/0', 'arn:k1')", '23514'); // two
      await refused("INSERT INTO key_wrap_windows (id, enc, epoch_id) VALUES (9, '\\x0c', 'no/such/0')", '23503');
      await c.query('SET LOCAL ROLE paylog_app');
      await refused("UPDATE key_wrap_windows SET epoch_id = 'acme/2026-12/0'", '42501');
      await c.query('ROLLBACK');
      const indexes = (await c.query("SELECT indexname FROM pg_indexes WHERE tablename IN ('data_keys', 'key_wrap_windows') ORDER BY 1")).rows.map((r) => r.indexname);
      expect(indexes).toEqual(['data_keys_epoch_id_idx', 'data_keys_pkey', 'data_keys_window_id_idx', 'key_wrap_windows_epoch_id_idx', 'key_wrap_windows_pkey']);
    });
  });
});

describe('transactions.created_at only where read (migration 0024), and what the append writes now', () => {
  it('rows from before keep their time; the appender leaves it NULL on epoch-wrapped records, writes it on KMS-wrapped ones (retention selects them by it)', async () => {
    const url = await newTestDatabase();
    await migrateUpTo(url, 23);
    await withClient(url, (c) => c.query("INSERT INTO transactions (transaction_id, log_index, request_mac) VALUES ('old', 100, '\\x00')"));
    await applyMigrations(url);
    await withClient(url, (c) =>
      c.query(
        `INSERT INTO key_epochs (epoch_id, processor, granularity, period_start, period_end, generation, public_key, wrapped_private_key)
         VALUES ('acme/2026-12/0', 'acme', 'month', '2026-12-01', '2027-01-01', 0, '\\x00', '\\x00')`,
      ),
    );
    const db = openAppDatabase(url);
    const appender = new LogAppender(db);
    const at = new Date('2026-12-07T10:00:00Z');
    try {
      const outcomes = await Promise.all([
        appender.append({ kind: 'transaction', leaf: Buffer.from('leaf w1'), createdAt: at, transaction: { transactionId: 'w1', requestMac: Buffer.alloc(16, 1) }, dataKey: { wrappedKey: Buffer.alloc(52, 1), epochId: 'acme/2026-12/0', window: { id: '7', enc: Buffer.alloc(32, 7) } } }),
        appender.append({ kind: 'transaction', leaf: Buffer.from('leaf w2'), createdAt: at, transaction: { transactionId: 'w2', requestMac: Buffer.alloc(16, 2) }, dataKey: { wrappedKey: Buffer.alloc(52, 2), epochId: 'acme/2026-12/0', window: { id: '7', enc: Buffer.alloc(32, 7) } } }),
        appender.append({ kind: 'transaction', leaf: Buffer.from('leaf e1'), createdAt: at, transaction: { transactionId: 'e1', requestMac: Buffer.alloc(16, 3) }, dataKey: { wrappedKey: Buffer.alloc(80, 3), epochId: 'acme/2026-12/0' } }),
        appender.append({ kind: 'transaction', leaf: Buffer.from('leaf k1'), createdAt: at, transaction: { transactionId: 'k1', requestMac: Buffer.alloc(16, 4) }, dataKey: { wrappedKey: Buffer.alloc(80, 4), kmsKeyId: 'arn:k1' } }),
      ]);
      expect(outcomes.map((o) => o.status)).toEqual(['appended', 'appended', 'appended', 'appended']);
      // A replay is still told by its MAC alone (no time read back).
      const again = await appender.append({ kind: 'transaction', leaf: Buffer.from('leaf e1 again'), createdAt: new Date(), transaction: { transactionId: 'e1', requestMac: Buffer.alloc(16, 3) }, dataKey: { wrappedKey: Buffer.alloc(80, 3), epochId: 'acme/2026-12/0' } });
      expect(again.status).toBe('replayed');
    } finally {
      await appender.close();
      await db.close();
    }
    await withClient(url, async (c) => {
      const rows = (
        await c.query(
          `SELECT t.transaction_id AS id, t.created_at, d.epoch_id AS row_epoch, w.epoch_id AS window_epoch
             FROM transactions t LEFT JOIN data_keys d ON d.log_index = t.log_index LEFT JOIN key_wrap_windows w ON w.id = d.window_id ORDER BY t.transaction_id`,
        )
      ).rows;
      expect(rows.map((r) => [r.id, r.created_at === null ? null : 'set', r.row_epoch, r.window_epoch])).toEqual([
        ['e1', null, 'acme/2026-12/0', null],
        ['k1', 'set', null, null],
        ['old', 'set', null, null],
        ['w1', null, null, 'acme/2026-12/0'],
        ['w2', null, null, 'acme/2026-12/0'],
      ]);
      expect((await c.query("SELECT created_at FROM transactions WHERE transaction_id = 'k1'")).rows[0].created_at).toEqual(at);
      expect((await c.query('SELECT count(*)::int AS n FROM log_entries WHERE created_at IS NOT NULL')).rows[0].n).toBe(0);
      expect((await c.query('SELECT count(*)::int AS n FROM tree_heads WHERE created_at IS NOT NULL')).rows[0].n).toBe(0);
      const macs = (await c.query('SELECT DISTINCT octet_length(mac) AS n FROM tree_heads')).rows;
      expect(macs).toEqual([{ n: null }]); // this appender has no head key; with one: below
    });
  });
});

describe('tree head MAC stored as 16 bytes (HMAC-SHA-256/128)', () => {
  const key = treeHeadKey(Buffer.alloc(32, 5));
  const root = Buffer.alloc(32, 9);
  const full = (size: number, r: Buffer) => {
    const n = Buffer.alloc(8);
    n.writeBigUInt64BE(BigInt(size));
    return createHmac('sha256', key).update('paylog/tree-head/v1').update(n).update(r).digest();
  };

  it('new rows store the first 16 bytes; rows from before (32) still verify; a shorter prefix, another size or root, or a flipped byte do not', () => {
    const stored = treeHeadMac(key, 42, root);
    expect(stored.length).toBe(STORED_TREE_HEAD_MAC_BYTES);
    expect(stored).toEqual(full(42, root).subarray(0, 16));
    expect(treeHeadMacValid(key, 42, root, stored)).toBe(true);
    expect(treeHeadMacValid(key, 42, root, full(42, root))).toBe(true); // a row written before
    // Forgeries a database attacker could try: a short prefix (8 bytes is 2^-64, not 2^-128), other heads, a flipped byte, nothing.
    expect(treeHeadMacValid(key, 42, root, stored.subarray(0, 8))).toBe(false);
    expect(treeHeadMacValid(key, 42, root, Buffer.alloc(0))).toBe(false);
    expect(treeHeadMacValid(key, 43, root, stored)).toBe(false);
    expect(treeHeadMacValid(key, 42, Buffer.alloc(32, 8), stored)).toBe(false);
    const flipped = Buffer.from(stored);
    flipped[15]! ^= 1;
    expect(treeHeadMacValid(key, 42, root, flipped)).toBe(false);
    expect(treeHeadMacValid(key, 42, root, null)).toBe(false);
  });

  it('the appender writes 16-byte MACs that the head reader trusts', async () => {
    const url = await newTestDatabase();
    await applyMigrations(url);
    const db = openAppDatabase(url);
    const appender = new LogAppender(db, { headKey: key });
    try {
      const t0 = new Date('2026-12-07T10:00:00Z');
      const outcomes = await Promise.all([1, 2, 3].map((i) => appender.append({ kind: 'admin_event', leaf: Buffer.from(`admin ${i}`), createdAt: t0 })));
      expect(outcomes.map((o) => o.status)).toEqual(['appended', 'appended', 'appended']);
    } finally {
      await appender.close();
      await db.close();
    }
    await withClient(url, async (c) => {
      const rows = (await c.query('SELECT size::int AS size, root_hash, mac FROM tree_heads ORDER BY size')).rows;
      expect(rows.length).toBeGreaterThan(0);
      for (const r of rows) {
        expect(r.mac.length).toBe(16);
        expect(treeHeadMacValid(key, r.size, r.root_hash, r.mac)).toBe(true);
      }
    });
  });
});

describe('transactions keyed by log index, transaction_id unique by a hash index (migration 0027)', () => {
  const grants = `SELECT grantee, privilege_type FROM information_schema.role_table_grants WHERE table_name = 'transactions' ORDER BY 1, 2`;
  const columnGrants = `SELECT grantee, column_name, privilege_type FROM information_schema.column_privileges WHERE table_name = 'transactions' AND grantee LIKE 'paylog%' ORDER BY 1, 2, 3`;
  const triggers = `SELECT tgname, tgenabled, pg_get_triggerdef(oid) AS def FROM pg_trigger WHERE tgrelid = 'transactions'::regclass AND NOT tgisinternal ORDER BY 1`;
  const policies = `SELECT relrowsecurity, (SELECT count(*)::int FROM pg_policy WHERE polrelid = 'transactions'::regclass) AS n FROM pg_class WHERE oid = 'transactions'::regclass`;

  it('a database at 0024 with rows upgrades: same rows, same grants and triggers, the data_keys foreign key kept; the service appends, replays and reads by id', async () => {
    const url = await newTestDatabase();
    await migrateUpTo(url, 26);
    const was = await withClient(url, async (c) => {
      for (const i of [0, 1, 2]) await c.query('INSERT INTO transactions (transaction_id, log_index, request_mac) VALUES ($1, $2, $3)', [`old${i}`, 100 + i, Buffer.alloc(16, i)]);
      await c.query("INSERT INTO data_keys (log_index, wrapped_key, kms_key_id) VALUES (100, '\\x01', 'arn:k1'), (102, '\\x02', 'arn:k1')");
      return { grants: (await c.query(grants)).rows, columnGrants: (await c.query(columnGrants)).rows, triggers: (await c.query(triggers)).rows, policies: (await c.query(policies)).rows };
    });
    expect(was.triggers.length).toBe(2);
    await applyMigrations(url);
    await withClient(url, async (c) => {
      expect((await c.query(grants)).rows).toEqual(was.grants);
      expect((await c.query(columnGrants)).rows).toEqual(was.columnGrants);
      expect((await c.query(triggers)).rows).toEqual(was.triggers);
      expect((await c.query(policies)).rows).toEqual(was.policies);
      const constraints = (
        await c.query(`SELECT conname, contype, pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conrelid IN ('transactions'::regclass, 'data_keys'::regclass) AND contype IN ('p', 'u', 'x', 'f') ORDER BY 1`)
      ).rows;
      expect(constraints).toEqual([
        { conname: 'data_keys_epoch_id_fkey', contype: 'f', def: 'FOREIGN KEY (epoch_id) REFERENCES key_epochs(epoch_id)' },
        { conname: 'data_keys_log_index_transactions_log_index_fk', contype: 'f', def: 'FOREIGN KEY (log_index) REFERENCES transactions(log_index)' },
        { conname: 'data_keys_pkey', contype: 'p', def: 'PRIMARY KEY (log_index)' },
        { conname: 'data_keys_window_id_key_wrap_windows_id_fk', contype: 'f', def: 'FOREIGN KEY (window_id) REFERENCES key_wrap_windows(id)' },
        { conname: 'transactions_pkey', contype: 'p', def: 'PRIMARY KEY (log_index)' },
        { conname: 'transactions_transaction_id_unique', contype: 'x', def: "EXCLUDE USING hash (transaction_id WITH =) WITH (fillfactor='100')" },
      ]);
      const rows = (await c.query('SELECT transaction_id, log_index::int AS i, request_mac FROM transactions ORDER BY log_index')).rows;
      expect(rows.map((r) => [r.transaction_id, r.i, r.request_mac[0]])).toEqual([['old0', 100, 0], ['old1', 101, 1], ['old2', 102, 2]]);
      await c.query('BEGIN');
      await c.query('SET LOCAL ROLE paylog_app');
      const refused = async (sql: string, code: string) => {
        await c.query('SAVEPOINT s');
        await expect(c.query(sql), sql).rejects.toMatchObject({ code });
        await c.query('ROLLBACK TO SAVEPOINT s');
      };
      await refused("INSERT INTO transactions (transaction_id, log_index, request_mac) VALUES ('old1', 9, '\\x00')", '23P01'); // an id from before the upgrade
      await refused("INSERT INTO transactions (transaction_id, log_index, request_mac) VALUES ('new', 101, '\\x00')", '23505'); // one row per log index
      await refused("INSERT INTO data_keys (log_index, wrapped_key, kms_key_id) VALUES (7, '\\x07', 'arn:k1')", '23503'); // no such record
      await refused('DELETE FROM transactions', '42501');
      await c.query('ROLLBACK');
    });
    const db = openAppDatabase(url);
    const appender = new LogAppender(db);
    try {
      const at = new Date('2026-12-07T10:00:00Z');
      const submit = (id: string, mac: number) =>
        appender.append({ kind: 'transaction', leaf: Buffer.from(`leaf ${id}`), createdAt: at, transaction: { transactionId: id, requestMac: Buffer.alloc(16, mac) }, dataKey: { wrappedKey: Buffer.alloc(80, mac), kmsKeyId: 'arn:k1' } });
      const outcomes = await Promise.all([submit('n1', 7), submit('n2', 8), submit('old1', 9)]);
      expect(outcomes.map((o) => o.status)).toEqual(['appended', 'appended', 'conflict']); // an id from before, another request: found by the batch-state read
      expect(outcomes[2]).toMatchObject({ logIndex: 101 });
      expect((await submit('n1', 7)).status).toBe('replayed');
      expect((await readTransactionRow(db.pool, 'old2'))?.log_index).toBe('102');
      expect((await readTransactionRow(db.pool, 'n2'))?.transaction_id).toBe('n2');
      expect(await readTransactionRow(db.pool, 'n3')).toBeUndefined();
    } finally {
      await appender.close();
      await db.close();
    }
  });
});
