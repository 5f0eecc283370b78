/**
 * The group-committing appender on real PostgreSQL: batching, isolation of a bad entry,
 * graceful close, and the tree after many batches.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyMigrations, openAppDatabase, type AppDatabase } from '../src/db/connection.js';
import { LogAppender, readTreeHead, type AppendRequest } from '../src/log/appender.js';
import { hashLeaf, rootFromLeafHashes } from '../src/log/merkle.js';
import { encodeLeaf } from '../src/log/leaf.js';
import { newTestDatabase } from './helpers/paylog.js';

let db: AppDatabase;
beforeAll(async () => {
  const url = await newTestDatabase();
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
    const appender = new LogAppender(db);
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
