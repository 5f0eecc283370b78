/**
 * Storage guarantees on real PostgreSQL: the runtime role cannot change log tables, and the
 * append-only triggers hold even for a superuser under session_replication_role = replica.
 * Also: the service starts on a clean data dir (embedded PostgreSQL) and again on the same one.
 */
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { withClient } from './helpers/db.js';
import { applyMigrations, openAppDatabase } from '../src/db/connection.js';
import { LOG_TABLES } from '../src/db/schema.js';
import { loadConfig } from '../src/config.js';
import { startPaylog } from '../src/app.js';
import { cardTransaction, logCapture, newTestDatabase, startTestPaylog, type TestPaylog } from './helpers/paylog.js';

let t: TestPaylog;
/** A column of each log table to "update" to itself. */
const COLUMN: Record<(typeof LOG_TABLES)[number], string> = {
  log_entries: 'entry_type',
  merkle_nodes: 'hash',
  merkle_tiles: 'hashes',
  tree_heads: 'root_hash',
  transactions: 'processor',
  access_entries: 'outcome',
  checkpoints: 'note',
  witness_cosignatures: 'signature_line',
};
const updateSql = (table: (typeof LOG_TABLES)[number]) => `UPDATE ${table} SET ${COLUMN[table]} = ${COLUMN[table]}`;
beforeAll(async () => {
  t = await startTestPaylog();
  const r = await t.call('checkout', 'POST', '/v1/transactions', cardTransaction());
  expect(r.status).toBe(201);
});
afterAll(async () => {
  await t?.stop();
});

const asOwner = <T>(fn: (c: pg.Client) => Promise<T>) => withClient(t.databaseUrl, fn);

describe('append-only log tables', () => {
  it('the service runs as a login role that is only a member of paylog_app: no way back to the owner', async () => {
    const pool = t.paylog.database.pool;
    const r = await pool.query('SELECT session_user AS s, current_user AS c, (SELECT rolsuper FROM pg_roles WHERE rolname = session_user) AS su');
    expect(r.rows[0].s).toMatch(/^paylog_svc_/);
    expect(r.rows[0].su).toBe(false);
    const owner = new URL(t.databaseUrl).username;
    await expect(pool.query(`SET ROLE ${owner}`)).rejects.toThrow(/permission denied/);
    await expect(pool.query('SET session_replication_role = replica')).rejects.toThrow(/permission denied/);
    await expect(pool.query('ALTER TABLE log_entries DISABLE TRIGGER ALL')).rejects.toThrow(/must be owner|permission denied/);
    await expect(pool.query(`UPDATE log_entries SET entry_type = entry_type`)).rejects.toThrow(/permission denied/);
  });

  it('paylog_app may INSERT and SELECT but not UPDATE, DELETE or TRUNCATE any log table', async () => {
    const app = openAppDatabase(t.databaseUrl);
    try {
      const who = await app.pool.query('SELECT current_user AS u');
      expect(who.rows[0].u).toBe('paylog_app');
      for (const table of LOG_TABLES) {
        await app.pool.query(`SELECT 1 FROM ${table} LIMIT 1`);
        await expect(app.pool.query(updateSql(table)), table).rejects.toThrow(/permission denied/);
        await expect(app.pool.query(`DELETE FROM ${table}`), table).rejects.toThrow(/permission denied/);
        await expect(app.pool.query(`TRUNCATE ${table}`), table).rejects.toThrow(/permission denied/);
      }
    } finally {
      await app.close();
    }
  });

  it('triggers refuse UPDATE/DELETE/TRUNCATE even for the owner, also with session_replication_role = replica', async () => {
    await asOwner(async (c) => {
      // Row triggers fire only on rows: give every log table at least one.
      await c.query(`INSERT INTO access_entries (log_index, transaction_id, principal_role, principal_name, certificate_fingerprint, action, outcome, source_address)
                     VALUES (999999, 'x', 'auditor', 'auditor', 'sha256:00', 'read', 'denied', '127.0.0.1')`);
      await c.query(`INSERT INTO checkpoints (size, root_hash, note) VALUES (0, '\\x00', 'x')`);
      await c.query(`INSERT INTO merkle_tiles (level, idx, hashes) VALUES (6, 999999, decode(repeat('00', 8192), 'hex'))`);
      await c.query(`INSERT INTO witness_cosignatures (checkpoint_size, root_hash, witness_key, cosigned_at, signature_line) VALUES (0, '\\x00', 'w+00000000', 0, 'x')`);
      for (const table of LOG_TABLES) {
        const r = await c.query(`SELECT count(*)::int AS n FROM ${table}`);
        expect(r.rows[0].n, table).toBeGreaterThan(0);
      }
      for (const replica of [false, true]) {
        if (replica) await c.query('SET session_replication_role = replica');
        for (const table of LOG_TABLES) {
          await expect(c.query(updateSql(table)), `${table} replica=${replica}`).rejects.toThrow(/append-only/);
          await expect(c.query(`DELETE FROM ${table}`), table).rejects.toThrow(/append-only/);
          await expect(c.query(`TRUNCATE ${table} CASCADE`), table).rejects.toThrow(/append-only/);
        }
      }
      // The rows are all still there.
      const r = await c.query('SELECT count(*)::int AS n FROM log_entries');
      expect(r.rows[0].n).toBeGreaterThan(0);
    });
  });

  it('the auditor role is read-only', async () => {
    const aud = openAppDatabase(t.databaseUrl, { role: 'paylog_auditor' });
    try {
      await aud.pool.query('SELECT count(*) FROM log_entries');
      await expect(aud.pool.query(`INSERT INTO tree_heads (size, root_hash) VALUES (999999, '\\x00')`)).rejects.toThrow(/permission denied/);
    } finally {
      await aud.close();
    }
  });

  it('migrations are idempotent and safe to run concurrently', async () => {
    const url = await newTestDatabase();
    await Promise.all([applyMigrations(url), applyMigrations(url), applyMigrations(url)]);
    await applyMigrations(url);
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      const r = await c.query(`SELECT count(*)::int AS n FROM pg_trigger WHERE tgname LIKE '%_no_%' AND tgenabled = 'A'`);
      expect(r.rows[0].n).toBe(LOG_TABLES.length * 2);
    } finally {
      await c.end();
    }
  });
});

describe('embedded PostgreSQL start-up', () => {
  it('starts from a clean data dir, and again on the existing one, keeping the log', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'paylog-embedded-'));
    try {
      const env = { PAYLOG_DATA_DIR: dataDir, PAYLOG_PORT: '0', PAYLOG_LOG_LEVEL: 'warn' };
      const first = await startPaylog(loadConfig(env), { logDestination: logCapture().stream });
      let size1: number;
      try {
        expect(existsSync(join(dataDir, 'pki', 'ca.pem'))).toBe(true);
        expect(existsSync(join(dataDir, 'pg', 'cluster', 'PG_VERSION'))).toBe(true);
        const r = await first.database.pool.query('SELECT count(*)::int AS n FROM processors');
        expect(r.rows[0].n).toBe(2);
        await first.appender.append({
          kind: 'key_event',
          leaf: Buffer.from('{"event":"shred","time":"2026-01-01T00:00:00.000Z","type":"key_event","v":1}'),
          createdAt: new Date(),
        });
        size1 = (await first.database.pool.query('SELECT max(size)::int AS n FROM tree_heads')).rows[0].n;
        expect(size1).toBe(1);
      } finally {
        await first.close();
      }
      const second = await startPaylog(loadConfig(env), { logDestination: logCapture().stream });
      try {
        const size2 = (await second.database.pool.query('SELECT max(size)::int AS n FROM tree_heads')).rows[0].n;
        expect(size2).toBe(size1);
        const ready = await second.server.inject({ method: 'GET', url: '/readyz' });
        expect(ready.statusCode).toBe(200);
      } finally {
        await second.close();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
