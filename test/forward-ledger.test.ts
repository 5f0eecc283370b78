/**
 * The forward ledger's writes (src/services/forward/ledger.ts): the move pending → sent is a
 * companion write of the append batch that commits the forward's granted access entry, so the
 * row is `sent` exactly when that entry is committed, and of several entries asking for one row
 * only one moves it — the rule that lets only one attempt send. Writes made in one turn of the
 * event loop (`finish`) go out as one statement and still move each row at most once, and the
 * stored answer reads back identical whatever characters it holds (U+0000, unpaired surrogates:
 * `answer` is json, drizzle/0028).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { applyMigrations, MIGRATIONS_DIR, openAppDatabase, type AppDatabase } from '../src/db/connection.js';
import { LogAppender, type AppendOutcome, type AppendRequest } from '../src/log/appender.js';
import { encodeLeaf } from '../src/log/leaf.js';
import { APPEND_PRECONDITIONS, keyMaterialRequires } from '../src/services/append-preconditions.js';
import { ForwardLedger, MARK_SENT, markSentWith, type StoredAnswer } from '../src/services/forward/ledger.js';
import { newTestDatabase } from './helpers/paylog.js';
import { query } from './helpers/db.js';
import { migrateUpTo } from './helpers/migrate.js';

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

/** `db`, counting the statements of the move to done it runs (on the real pool). */
function countingDoneWrites(): { db: AppDatabase; statements(): number } {
  let n = 0;
  const query = (q: { name?: string }) => ((n += q.name === 'paylog_forward_done' ? 1 : 0), db.keptPlans.query(q as never));
  return { db: { ...db, keptPlans: { query } as unknown as AppDatabase['keptPlans'] }, statements: () => n };
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

  it('answers holding U+0000 (body and header value) or unpaired surrogates are finished in one statement with the others of their turn: all done, each read back identical', async () => {
    const tx = 'tx-ledger-nul';
    const nul: StoredAnswer = {
      kind: 'answer',
      // A NUL byte of the processor's body as maskAnswer passes it on, next to the six characters
      // \u0000 of a JSON escape it left as they were, and one in a header value.
      answer: { status: 402, headers: { 'content-type': 'application/json', 'x-request-id': 'req\u0000-1' }, body: '{"code":"a\u0000b","raw":"\\u0000"}\u0000', masked: 2, accessLogIndex: 11, resultLogIndex: 12, durationMs: 1.25 },
    };
    const lone: StoredAnswer = { kind: 'error', code: 'DESTINATION_RESPONSE_UNREADABLE', message: 'x\ud800y\udc00z\udfff\ud83d' };
    const stored = { nul, lone, ok1: answer, ok2: answer } as const;
    for (const k of Object.keys(stored)) expect(await new ForwardLedger(db).claim(tx, k, mac)).toEqual({ claimed: true });
    const counted = countingDoneWrites();
    const l = new ForwardLedger(counted.db);
    const moved = await Promise.all(Object.entries(stored).map(([k, a], i) => l.finish(tx, k, 'pending', a, i + 1)));
    expect(moved).toEqual([true, true, true, true]);
    expect(counted.statements()).toBe(1);
    expect(await rowsOf(tx)).toEqual(['lone', 'nul', 'ok1', 'ok2'].map((k) => [k, 'done', null]));
    for (const [k, a] of Object.entries(stored)) {
      const row = await l.read(tx, k);
      expect(row?.answer, k).toEqual(a);
      expect(JSON.stringify(row?.answer), k).toBe(JSON.stringify(a)); // every string the same code units
    }
    const back = (await l.read(tx, 'nul'))!.answer as Extract<StoredAnswer, { kind: 'answer' }>;
    expect([back.answer.body.length, back.answer.headers['x-request-id']!.length]).toEqual([nul.answer.body.length, nul.answer.headers['x-request-id']!.length]);
    expect(back.answer.body).toBe(nul.answer.body);
    expect(((await l.read(tx, 'lone'))!.answer as { message: string }).message).toBe(lone.message);
  });
});

/** The journal index of the migration tagged NNNN_`name` (found by name: the number may change at merge). */
function migrationIndex(name: string): number {
  const journal = JSON.parse(readFileSync(join(MIGRATIONS_DIR, 'meta/_journal.json'), 'utf8')) as { entries: { idx: number; tag: string }[] };
  return journal.entries.find((e) => e.tag.endsWith(`_${name}`))!.idx;
}

describe('forward_requests.answer as json (drizzle/0028)', () => {
  it('answers stored as jsonb before the migration read back the same after it; the runtime role still writes and reads the column', async () => {
    const url = await newTestDatabase();
    await migrateUpTo(url, migrationIndex('forward_answer_json') - 1);
    const old = { kind: 'answer', answer: { status: 201, headers: { 'content-type': 'application/json' }, body: '{"é":"\\n\\"x\\"","n":1}', masked: 1, accessLogIndex: 3, resultLogIndex: 4, durationMs: 0.75 } };
    await query(url, "INSERT INTO forward_requests (transaction_id, idempotency_key, request_mac, state, answer) VALUES ('tx-old', 'k', '\\x00', 'done', $1::jsonb), ('tx-old', 'p', '\\x00', 'pending', NULL)", [JSON.stringify(old)]);
    await applyMigrations(url);
    expect((await query(url, "SELECT data_type FROM information_schema.columns WHERE table_name = 'forward_requests' AND column_name = 'answer'"))[0]!.data_type).toBe('json');
    const migrated = openAppDatabase(url);
    try {
      const l = new ForwardLedger(migrated);
      expect((await l.read('tx-old', 'k'))?.answer).toEqual(old);
      const nul: StoredAnswer = { kind: 'error', code: 'INTERNAL', message: 'a\u0000b' };
      expect(await l.finish('tx-old', 'p', 'pending', nul, 9)).toBe(true);
      expect((await l.read('tx-old', 'p'))?.answer).toEqual(nul);
    } finally {
      await migrated.close();
    }
  });
});
