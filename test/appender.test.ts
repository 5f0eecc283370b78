/**
 * The group-committing appender on real PostgreSQL: batching, isolation of a bad entry,
 * graceful close, and the tree after many batches.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyMigrations, openAppDatabase, type AppDatabase } from '../src/db/connection.js';
import { LogAppender, type AppendRequest } from '../src/log/appender.js';
import { readTreeHead } from '../src/log/store.js';
import { APPEND_PRECONDITIONS, submissionRequires } from '../src/services/append-preconditions.js';
import { hashLeaf, rootFromLeafHashes } from '../src/log/merkle.js';
import { encodeLeaf } from '../src/log/leaf.js';
import { newTestDatabase } from './helpers/paylog.js';
import { query } from './helpers/db.js';

let db: AppDatabase;
let databaseUrl: string;
beforeAll(async () => {
  const url = await newTestDatabase();
  databaseUrl = url;
  await applyMigrations(url);
  db = openAppDatabase(url);
});
afterAll(async () => {
  await db?.close();
});

let n = 0;
function keyEvent(): AppendRequest {
  const time = new Date(Date.UTC(2026, 0, 1, 0, 0, 0, n++)).toISOString();
  return { kind: 'key_event', leaf: encodeLeaf({ v: 1, type: 'key_event', time, event: 'shred', keyName: `k${n}` }), createdAt: new Date(time) };
}

describe('LogAppender', () => {
  it('batches concurrent appends and resolves each only after its batch is committed', async () => {
    const batches: number[] = [];
    const appender = new LogAppender(db, { onCommit: ({ batchSize }) => batches.push(batchSize) });
    const outcomes = await Promise.all(Array.from({ length: 200 }, () => appender.append(keyEvent())));
    expect(outcomes.every((o) => o.status === 'appended')).toBe(true);
    expect(batches.reduce((x, y) => x + y, 0)).toBe(200);
    expect(batches.length).toBeLessThan(200); // group commit happened
    // Resolved means committed: a fresh connection sees every entry.
    const rows = await db.pool.query('SELECT count(*)::int AS c FROM log_entries');
    expect(rows.rows[0].c).toBeGreaterThanOrEqual(200);
    await appender.close();
  });

  it('one failing entry does not fail the rest of its batch', async () => {
    const appender = new LogAppender(db, { preconditions: APPEND_PRECONDITIONS });
    const bad: AppendRequest = {
      kind: 'access',
      leaf: encodeLeaf({ v: 1, type: 'key_event', time: '2026-01-01T00:00:00.000Z', event: 'shred' }),
      createdAt: new Date(),
      // NOT NULL violation inside the database.
      access: { transactionId: null as unknown as string },
    };
    const reqs = [keyEvent(), keyEvent(), bad, keyEvent()];
    const settled = await Promise.allSettled(reqs.map((r) => appender.append(r)));
    expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled']);
    expect((settled[2] as PromiseRejectedResult).reason.code).toBe('LOG_UNAVAILABLE');
    await appender.close();
  });

  it('close() finishes every queued batch, then refuses new entries', async () => {
    const appender = new LogAppender(db, { maxBatch: 7 });
    const pending = Array.from({ length: 50 }, () => appender.append(keyEvent()));
    await appender.close();
    const outcomes = await Promise.all(pending);
    expect(outcomes.every((o) => o.status === 'appended')).toBe(true);
    await expect(appender.append(keyEvent())).rejects.toMatchObject({ code: 'LOG_UNAVAILABLE' });
  });

  it('the tree head after all these batches is the from-scratch RFC 9162 root', async () => {
    const head = await readTreeHead(db.db);
    const leaves = (await db.pool.query('SELECT leaf FROM log_entries ORDER BY idx')).rows.map((r) => r.leaf as Buffer);
    expect(head?.size).toBe(leaves.length);
    expect(rootFromLeafHashes(leaves.map(hashLeaf)).equals(head!.rootHash)).toBe(true);
  });
});

describe('LogAppender preconditions (checked at commit, under the append lock)', () => {
  const epochRow = async (epochId: string, processor: string, retired: boolean) => {
    await db.pool.query(
      `INSERT INTO key_epochs (epoch_id, processor, granularity, period_start, period_end, generation, public_key, kms_key_id, wrapped_private_key, wrapped_key_sha256, retired_at)
       VALUES ($1, $2, 'month', '2026-12-01T00:00:00Z', '2027-01-01T00:00:00Z', $3, $4, 'arn:aws:kms:us-east-1:000000000000:key/test', $4, $4, $5)`,
      [epochId, processor, retired ? 1 : 0, Buffer.alloc(32, 7), retired ? new Date() : null],
    );
  };
  let m = 0;
  const tx = (processor: string, epochId: string, id = `pre-${m++}`, mac = Buffer.alloc(32, 1)): AppendRequest => ({
    kind: 'transaction',
    leaf: Buffer.from(`leaf ${id} ${m}`),
    createdAt: new Date(),
    transaction: { transactionId: id, requestMac: mac },
    dataKey: { wrappedKey: Buffer.alloc(80, 2), kmsKeyId: null, epochId },
    requires: submissionRequires({ processor, epochId }),
  });

  beforeAll(async () => {
    // As the owner: the runtime role may not register processors (migration 0009).
    await query(databaseUrl, `INSERT INTO processors (name, principal_uri, status) VALUES ('pre-on', 'urn:x:on', 'active'), ('pre-off', 'urn:x:off', 'disabled')`);
    await epochRow('pre-on/2026-12/0', 'pre-on', false);
    await epochRow('pre-on/2026-12/1', 'pre-on', true);
    await epochRow('pre-off/2026-12/0', 'pre-off', false);
  });

  it('appends an entry whose processor is active and whose epoch still encrypts; refuses the others, each alone', async () => {
    const appender = new LogAppender(db, { preconditions: APPEND_PRECONDITIONS });
    try {
      const size0 = (await readTreeHead(db.db))?.size ?? 0;
      const [ok, retired, disabled, missing] = await Promise.all([
        appender.append(tx('pre-on', 'pre-on/2026-12/0')),
        appender.append(tx('pre-on', 'pre-on/2026-12/1')),
        appender.append(tx('pre-off', 'pre-off/2026-12/0')),
        appender.append(tx('pre-nobody', 'pre-on/2026-12/0')),
      ]);
      expect(ok.status).toBe('appended');
      expect(retired).toEqual({ status: 'refused', reason: 'epoch_unusable' });
      expect(disabled).toEqual({ status: 'refused', reason: 'processor_inactive' });
      expect(missing).toEqual({ status: 'refused', reason: 'processor_inactive' });
      // Only the one entry reached the log and its lookup rows.
      expect((await readTreeHead(db.db))?.size).toBe(size0 + 1);
      const n = await db.pool.query("SELECT count(*)::int AS n FROM data_keys d JOIN transactions t ON t.log_index = d.log_index WHERE t.transaction_id LIKE 'pre-%'");
      expect(n.rows[0].n).toBe(1);
    } finally {
      await appender.close();
    }
  });

  it('an identical replay stays a replay after its epoch was retired (replays are decided first)', async () => {
    const appender = new LogAppender(db, { preconditions: APPEND_PRECONDITIONS });
    try {
      const first = tx('pre-on', 'pre-on/2026-12/0', 'pre-replay');
      expect((await appender.append(first)).status).toBe('appended');
      await db.pool.query("UPDATE key_epochs SET retired_at = now() WHERE epoch_id = 'pre-on/2026-12/0'");
      const again = await appender.append({ ...first, leaf: Buffer.from('a fresh seal of the same body') });
      expect(again.status).toBe('replayed');
      const fresh = await appender.append(tx('pre-on', 'pre-on/2026-12/0'));
      expect(fresh).toEqual({ status: 'refused', reason: 'epoch_unusable' });
    } finally {
      await appender.close();
    }
  });

  it('a revoked submitter is refused, by fingerprint or by serial, even for an identical replay (checked before replays)', async () => {
    const appender = new LogAppender(db, { preconditions: APPEND_PRECONDITIONS });
    const submitter = (n: number) => ({ certificateFingerprint: `sha256:${String(n).padStart(64, '0')}`, serialHex: `5e${n}` });
    const byPrincipal = (id: string, principal: { certificateFingerprint: string; serialHex: string }): AppendRequest => ({
      kind: 'transaction',
      leaf: Buffer.from(`leaf ${id} ${m++}`),
      createdAt: new Date(),
      transaction: { transactionId: id, requestMac: Buffer.alloc(32, 3) },
      dataKey: { wrappedKey: Buffer.alloc(80, 2), kmsKeyId: 'arn:aws:kms:us-east-1:000000000000:key/test', epochId: null },
      requires: submissionRequires({ principal, processor: 'pre-on' }),
    });
    try {
      const first = byPrincipal('pre-revoked-replay', submitter(1));
      expect((await appender.append(first)).status).toBe('appended');
      const size0 = (await readTreeHead(db.db))!.size;
      await db.pool.query(
        `INSERT INTO revoked_certificates (fingerprint, serial, revoked_by) VALUES ($1, NULL, 'test'), ('serial:5e2', '5e2', 'test')`,
        [submitter(1).certificateFingerprint],
      );
      const [replay, bySerial, other] = await Promise.all([
        appender.append({ ...first, leaf: Buffer.from('a fresh seal of the same body') }),
        appender.append(byPrincipal('pre-revoked-serial', submitter(2))),
        appender.append(byPrincipal('pre-not-revoked', submitter(3))),
      ]);
      expect(replay).toEqual({ status: 'refused', reason: 'principal_revoked' });
      expect(bySerial).toEqual({ status: 'refused', reason: 'principal_revoked' });
      expect(other.status).toBe('appended');
      expect((await readTreeHead(db.db))!.size).toBe(size0 + 1);
    } finally {
      await appender.close();
    }
  });
});
