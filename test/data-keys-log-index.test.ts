/**
 * Issue 20, storage: data_keys keyed by the record's log index (drizzle/0018). A database from
 * before the migration keeps every data key row — the same wrapped key, key reference and shred
 * state, now under its transaction's log index — and the same privileges; the table refuses
 * what it refused before.
 */
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { newTestDatabase } from './helpers/paylog.js';
import { withClient } from './helpers/db.js';
import { migrateUpTo } from './helpers/migrate.js';
import { applyMigrations } from '../src/db/connection.js';

const ROLES = ['paylog_app', 'paylog_keys', 'paylog_admin', 'paylog_auditor'];
const PRIVILEGES = ['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER'];
/** The columns data_keys has before and after migration 0018. */
const KEPT_COLUMNS = ['kms_key_id', 'wrapped_key', 'epoch_id', 'shredded_at'];

/** Every role's table and column privileges on data_keys, as comparable text. */
async function privileges(c: pg.Client): Promise<string[]> {
  const out: string[] = [];
  for (const role of ROLES) {
    for (const p of PRIVILEGES) {
      if ((await c.query('SELECT has_table_privilege($1, $2, $3) AS ok', [role, 'data_keys', p])).rows[0].ok) out.push(`${role} ${p}`);
    }
    for (const col of KEPT_COLUMNS) {
      for (const p of ['SELECT', 'INSERT', 'UPDATE']) {
        if ((await c.query('SELECT has_column_privilege($1, $2, $3, $4) AS ok', [role, 'data_keys', col, p])).rows[0].ok) out.push(`${role} ${p}(${col})`);
      }
    }
  }
  return out;
}

describe('data_keys by transaction_id → by log index (migration 0018)', () => {
  it('rows carry over under their log index (live, shredded, v1 and v2); privileges and refusals are unchanged', async () => {
    const url = await newTestDatabase();
    await migrateUpTo(url, 17);
    const wrapped = (n: number) => Buffer.alloc(84, n);
    const shreddedAt = new Date('2026-12-01T00:00:00Z');
    const before = await withClient(url, async (c) => {
      await c.query(
        `INSERT INTO key_epochs (epoch_id, processor, granularity, period_start, period_end, generation, public_key, wrapped_private_key)
         VALUES ('acme/2026-12/0', 'acme', 'month', '2026-12-01', '2027-01-01', 0, '\\x00', '\\x00')`,
      );
      const ids = ['v2-live', 'v1-live', 'v2-shredded', 'v1-shredded'];
      for (const [i, id] of ids.entries()) {
        await c.query('INSERT INTO transactions (transaction_id, log_index, request_mac) VALUES ($1, $2, $3)', [id, 10 + i * 7, Buffer.alloc(32)]);
      }
      await c.query("INSERT INTO data_keys (transaction_id, wrapped_key, epoch_id) VALUES ('v2-live', $1, 'acme/2026-12/0')", [wrapped(1)]);
      await c.query("INSERT INTO data_keys (transaction_id, wrapped_key, kms_key_id, created_at) VALUES ('v1-live', $1, 'arn:k1', now())", [wrapped(2)]);
      await c.query("INSERT INTO data_keys (transaction_id, wrapped_key, epoch_id, shredded_at) VALUES ('v2-shredded', NULL, 'acme/2026-12/0', $1)", [shreddedAt]);
      await c.query("INSERT INTO data_keys (transaction_id, wrapped_key, kms_key_id, shredded_at) VALUES ('v1-shredded', NULL, 'arn:k1', $1)", [shreddedAt]);
      return await privileges(c);
    });
    expect(before).toContain('paylog_app INSERT');
    expect(before).toContain('paylog_keys UPDATE(wrapped_key)');

    await applyMigrations(url);
    await withClient(url, async (c) => {
      const rows = (
        await c.query(
          'SELECT t.transaction_id, d.log_index::int AS log_index, d.wrapped_key, d.epoch_id, d.kms_key_id, d.shredded_at FROM data_keys d JOIN transactions t ON t.log_index = d.log_index ORDER BY d.log_index',
        )
      ).rows;
      expect(rows).toEqual([
        { transaction_id: 'v2-live', log_index: 10, wrapped_key: wrapped(1), epoch_id: 'acme/2026-12/0', kms_key_id: null, shredded_at: null },
        { transaction_id: 'v1-live', log_index: 17, wrapped_key: wrapped(2), epoch_id: null, kms_key_id: 'arn:k1', shredded_at: null },
        { transaction_id: 'v2-shredded', log_index: 24, wrapped_key: null, epoch_id: 'acme/2026-12/0', kms_key_id: null, shredded_at: shreddedAt },
        { transaction_id: 'v1-shredded', log_index: 31, wrapped_key: null, epoch_id: null, kms_key_id: 'arn:k1', shredded_at: shreddedAt },
      ]);
      const columns = (await c.query("SELECT column_name FROM information_schema.columns WHERE table_name = 'data_keys' ORDER BY ordinal_position")).rows.map((r) => r.column_name);
      expect(columns).toEqual(['log_index', 'window_id', 'wrapped_key', 'epoch_id', 'kms_key_id', 'shredded_at']);
      expect((await c.query('SELECT window_id FROM data_keys WHERE window_id IS NOT NULL')).rows).toEqual([]); // rows from before keep their whole wrapped key
      expect(await privileges(c)).toEqual(before);

      // What the table refused before, it refuses now.
      const refused = async (sql: string, params: unknown[], code: string) => {
        await c.query('SAVEPOINT s');
        await expect(c.query(sql, params), sql).rejects.toMatchObject({ code });
        await c.query('ROLLBACK TO SAVEPOINT s');
      };
      await c.query('BEGIN');
      await c.query("INSERT INTO transactions (transaction_id, log_index, request_mac) VALUES ('no-key-yet', 38, '\\x00')");
      await refused("INSERT INTO data_keys (log_index, wrapped_key, epoch_id) VALUES (10, '\\x01', 'acme/2026-12/0')", [], '23505'); // one row per record
      await refused("INSERT INTO data_keys (log_index, wrapped_key, kms_key_id) VALUES (11, '\\x01', 'arn:k1')", [], '23503'); // no transaction there
      await refused("INSERT INTO data_keys (log_index, wrapped_key, epoch_id) VALUES (38, '\\x01', 'no/such/0')", [], '23503'); // no such epoch
      await refused("INSERT INTO data_keys (log_index, wrapped_key) VALUES (38, '\\x01')", [], '23514'); // neither key reference
      // Key-wrap windows: a row continues an existing window, and only an epoch's wrapped key.
      await c.query("INSERT INTO key_wrap_windows (id, enc) VALUES (7, '\\x0a')");
      await refused("INSERT INTO data_keys (log_index, window_id, wrapped_key, epoch_id) VALUES (38, 8, '\\x01', 'acme/2026-12/0')", [], '23503');
      await refused("INSERT INTO data_keys (log_index, window_id, wrapped_key, kms_key_id) VALUES (38, 7, '\\x01', 'arn:k1')", [], '23514');
      await refused("INSERT INTO key_wrap_windows (id, enc) VALUES (7, '\\x0b')", [], '23505'); // a window's enc is written once
      await c.query('SET LOCAL ROLE paylog_app');
      await refused('UPDATE data_keys SET wrapped_key = NULL', [], '42501');
      await refused('DELETE FROM data_keys', [], '42501');
      await refused("UPDATE key_wrap_windows SET enc = '\\x00'", [], '42501');
      await refused('DELETE FROM key_wrap_windows', [], '42501');
      await c.query("INSERT INTO key_wrap_windows (id, enc) VALUES (9, '\\x0c')"); // the append writes them
      await c.query('ROLLBACK');
      await c.query('BEGIN');
      await c.query('SET LOCAL ROLE paylog_keys');
      await refused('DELETE FROM data_keys', [], '42501');
      await refused('UPDATE data_keys SET log_index = log_index', [], '42501');
      await refused('UPDATE data_keys SET window_id = NULL', [], '42501');
      await refused("UPDATE key_wrap_windows SET enc = '\\x00'", [], '42501');
      await c.query('UPDATE data_keys SET wrapped_key = NULL, shredded_at = now() WHERE log_index = 10'); // a shred: allowed
      await c.query('ROLLBACK');
    });
  });

  it('a fresh database has the same data_keys privileges as a migrated one', async () => {
    const url = await newTestDatabase();
    await applyMigrations(url);
    const fresh = await withClient(url, privileges);
    expect(fresh).toEqual(
      expect.arrayContaining(['paylog_app SELECT', 'paylog_app INSERT', 'paylog_keys SELECT', 'paylog_keys UPDATE(wrapped_key)', 'paylog_keys UPDATE(kms_key_id)', 'paylog_keys UPDATE(shredded_at)', 'paylog_auditor SELECT']),
    );
    expect(fresh.filter((p) => /UPDATE|DELETE|TRUNCATE/.test(p) && !p.startsWith('paylog_keys UPDATE('))).toEqual([]);
  });
});
