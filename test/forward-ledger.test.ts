/**
 * The forward ledger's writes (src/services/forward/ledger.ts): the move pending → sent is a
 * companion write of the append batch that commits the forward's granted access entry, so the
 * row is `sent` exactly when that entry is committed, and of several entries asking for one row
 * only one moves it — the rule that lets only one attempt send. Writes made in one turn of the
 * event loop (`finish`) go out as one statement and still move each row at most once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyMigrations, openAppDatabase, type AppDatabase } from '../src/db/connection.js';
import { LogAppender, type AppendOutcome, type AppendRequest } from '../src/log/appender.js';
import { encodeLeaf } from '../src/log/leaf.js';
import { APPEND_PRECONDITIONS, keyMaterialRequires } from '../src/services/append-preconditions.js';
import { ForwardLedger, MARK_SENT, markSentWith, type StoredAnswer } from '../src/services/forward/ledger.js';
import { newTestDatabase } from './helpers/paylog.js';
import { query } from './helpers/db.js';

let db: AppDatabase;
let databaseUrl: string;
let appender: LogAppender;
beforeAll(async () => {
  databaseUrl = await newTestDatabase();
  await applyMigrations(databaseUrl);
  db = openAppDatabase(databaseUrl);
  appender = new LogAppender(db, { preconditions: APPEND_PRECONDITIONS, companions: [MARK_SENT] });
});
afterAll(async () => {
  await appender?.close();
  await db?.close();
});

const mac = Buffer.alloc(32, 7);
const answer = { kind: 'error', code: 'INTERNAL', message: 'x' } as const;

let n = 0;
/** A (stand-in) granted access entry of transaction `tx` asking to move (tx, key) to sent. */
function granted(tx: string, key: string, extra: Partial<Extract<AppendRequest, { kind: 'access' }>> = {}): AppendRequest {
  const time = new Date(Date.UTC(2026, 0, 1, 0, 0, 0, n++)).toISOString();
  return { kind: 'access', leaf: encodeLeaf({ v: 1, type: 'key_event', time, event: 'shred', keyName: `g${n}` }), createdAt: new Date(time), access: { transactionId: tx }, companion: markSentWith(tx, key), ...extra };
}

async function rowsOf(tx: string): Promise<Array<[string, string, number | null]>> {
  const rows = await query(databaseUrl, `SELECT idempotency_key, state, access_log_index FROM forward_requests WHERE transaction_id = '${tx}' ORDER BY idempotency_key`);
  return rows.map((r) => [r.idempotency_key as string, r.state as string, r.access_log_index === null ? null : Number(r.access_log_index)]);
}

const logIndexOf = (o: AppendOutcome) => ('logIndex' in o ? o.logIndex : -1);

describe('ForwardLedger: pending → sent in the transaction that commits the access entry', () => {
  it('two entries of one batch for one key: exactly one moves it; other keys of the batch move independently', async () => {
    const ledger = new ForwardLedger(db);
    for (const k of ['a', 'b', 'c']) expect(await ledger.claim('tx-ledger-1', k, mac)).toEqual({ claimed: true });
    const [a1, a2, b, missing] = await Promise.all([granted('tx-ledger-1', 'a'), granted('tx-ledger-1', 'a'), granted('tx-ledger-1', 'b'), granted('tx-ledger-1', 'zz')].map((r) => appender.append(r)));
    for (const o of [a1, a2, b, missing]) expect(o!.status).toBe('appended');
    const moved = (o: AppendOutcome | undefined) => o?.status === 'appended' && o.companion === true;
    expect([a1, a2].filter(moved)).toHaveLength(1);
    expect(moved(b)).toBe(true);
    expect(moved(missing)).toBe(false);
    // Already sent: a later entry does not move it again.
    expect(moved(await appender.append(granted('tx-ledger-1', 'b')))).toBe(false);
    expect(await rowsOf('tx-ledger-1')).toEqual([
      ['a', 'sent', logIndexOf(moved(a1) ? a1! : a2!)],
      ['b', 'sent', logIndexOf(b!)],
      ['c', 'pending', null],
    ]);
  });

  it('no entry committed, no move: a batch that fails leaves the row pending and the log without the entry; a denied entry moves nothing', async () => {
    const ledger = new ForwardLedger(db);
    for (const k of ['r', 'd']) expect(await ledger.claim('tx-ledger-3', k, mac)).toEqual({ claimed: true });
    const size = async () => (await db.pool.query('SELECT count(*)::int AS c FROM log_entries')).rows[0].c as number;
    const before = await size();
    // The batch's insert fails (NOT NULL violation) after the companion write ran in its statement.
    const failing = granted('tx-ledger-3', 'r', { access: { transactionId: null as unknown as string } });
    await expect(appender.append(failing)).rejects.toMatchObject({ code: 'LOG_UNAVAILABLE' });
    expect(await size()).toBe(before);
    // A precondition fails at commit (no data key): the denied leaf is appended instead, without the write.
    const denied = await appender.append(granted('tx-ledger-3', 'd', { requires: keyMaterialRequires({ transactionId: 'tx-ledger-3' }, Buffer.from(encodeLeaf({ v: 1, type: 'key_event', time: '2026-01-02T00:00:00.000Z', event: 'shred', keyName: 'denied' }))) }));
    expect(denied.status).toBe('denied');
    expect(await rowsOf('tx-ledger-3')).toEqual([
      ['d', 'pending', null],
      ['r', 'pending', null],
    ]);
  });

  it('the write is planned for the table as it is: a plan made while forward_requests was empty does not keep scanning it whole', async () => {
    const url = await newTestDatabase();
    await applyMigrations(url);
    const one = openAppDatabase(url, { max: 1 }); // one connection: the one whose plans are cached
    const appender1 = new LogAppender(one, { companions: [MARK_SENT] });
    try {
      expect(await new ForwardLedger(one).claim('tx-plan', 'first', mac)).toEqual({ claimed: true });
      expect(await appender1.append(granted('tx-plan', 'first'))).toMatchObject({ companion: true });
      await query(url, "INSERT INTO forward_requests (transaction_id, idempotency_key, request_mac, state) SELECT 'tx-bulk-' || g, 'k', '\\x00', 'done' FROM generate_series(1, 50000) g");
      expect(await new ForwardLedger(one).claim('tx-plan', 'second', mac)).toEqual({ claimed: true });
      const seqScans = async () => {
        await one.pool.query('SELECT pg_stat_force_next_flush()');
        return Number((await query(url, "SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'forward_requests'"))[0]!.seq_scan);
      };
      const before = await seqScans();
      expect(await appender1.append(granted('tx-plan', 'second'))).toMatchObject({ companion: true });
      expect(await seqScans()).toBe(before);
    } finally {
      await appender1.close();
      await one.close();
    }
  });

  it('the move to done keeps an index plan: one made while forward_requests was nearly empty does not scan it whole once it has grown', async () => {
    const url = await newTestDatabase();
    await applyMigrations(url);
    const one = openAppDatabase(url, { max: 1 });
    try {
      const ledger = new ForwardLedger(one);
      expect(await ledger.claim('tx-done-plan', 'first', mac)).toEqual({ claimed: true });
      expect(await ledger.finish('tx-done-plan', 'first', 'pending', answer, null)).toBe(true); // its plan is made and kept here
      await query(url, "INSERT INTO forward_requests (transaction_id, idempotency_key, request_mac, state) SELECT 'tx-bulk-' || g, 'k', '\\x00', 'pending' FROM generate_series(1, 50000) g");
      expect(await ledger.claim('tx-done-plan', 'second', mac)).toEqual({ claimed: true });
      const seqScans = async () => {
        await Promise.all([one.pool, one.keptPlans].map((p) => p.query('SELECT pg_stat_force_next_flush()')));
        return Number((await query(url, "SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'forward_requests'"))[0]!.seq_scan);
      };
      const before = await seqScans();
      expect(await ledger.finish('tx-done-plan', 'second', 'pending', answer, null)).toBe(true);
      expect(await seqScans()).toBe(before);
    } finally {
      await one.close();
    }
  });

  it('an entry naming an unregistered companion write is rejected before it is queued', async () => {
    const bare = new LogAppender(db, {});
    await expect(bare.append(granted('tx-ledger-4', 'k'))).rejects.toMatchObject({ code: 'INTERNAL' });
    await bare.close();
  });
});

describe('ForwardLedger: writes of one turn, one statement', () => {
  it('finish moves a row only from the state it names, once per turn', async () => {
    const ledger = new ForwardLedger(db);
    expect(await ledger.claim('tx-ledger-2', 'a', mac)).toEqual({ claimed: true });
    expect(await ledger.claim('tx-ledger-2', 'b', mac)).toEqual({ claimed: true });
    const [fromSent, p1, p2] = await Promise.all([ledger.finish('tx-ledger-2', 'a', 'sent', answer, null), ledger.finish('tx-ledger-2', 'b', 'pending', answer, 3), ledger.finish('tx-ledger-2', 'b', 'pending', answer, 4)]);
    expect(fromSent).toBe(false);
    expect([p1, p2].filter(Boolean)).toHaveLength(1);
    const rows = await query(databaseUrl, "SELECT idempotency_key, state, answer FROM forward_requests WHERE transaction_id = 'tx-ledger-2' ORDER BY idempotency_key");
    expect(rows.map((r) => [r.idempotency_key, r.state])).toEqual([
      ['a', 'pending'],
      ['b', 'done'],
    ]);
    expect(rows[1].answer).toEqual(answer);
  });

  it('an answer jsonb refuses (\\u0000, as a processor may send) fails alone: the forwards finished in the same turn are done', async () => {
    const ledger = new ForwardLedger(db);
    for (const k of ['nul', 'ok1', 'ok2']) expect(await ledger.claim('tx-ledger-nul', k, mac)).toEqual({ claimed: true });
    const nul: StoredAnswer = { kind: 'error', code: 'INTERNAL', message: 'a\u0000b' };
    const results = await Promise.allSettled([ledger.finish('tx-ledger-nul', 'ok1', 'pending', answer, 1), ledger.finish('tx-ledger-nul', 'nul', 'pending', nul, 2), ledger.finish('tx-ledger-nul', 'ok2', 'pending', answer, 3)]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    const rows = await query(databaseUrl, "SELECT idempotency_key, state FROM forward_requests WHERE transaction_id = 'tx-ledger-nul' ORDER BY idempotency_key");
    expect(rows.map((r) => [r.idempotency_key, r.state])).toEqual([
      ['nul', 'pending'],
      ['ok1', 'done'],
      ['ok2', 'done'],
    ]);
  });
});
