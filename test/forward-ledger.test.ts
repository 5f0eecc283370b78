/**
 * The forward ledger's writes made in one turn of the event loop go out as one statement per
 * kind (src/services/forward/ledger.ts): they must still move each row at most once, to exactly
 * one caller — the rule that lets only one attempt send.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyMigrations, openAppDatabase, type AppDatabase } from '../src/db/connection.js';
import { ForwardLedger } from '../src/services/forward/ledger.js';
import { newTestDatabase } from './helpers/paylog.js';
import { query } from './helpers/db.js';

let db: AppDatabase;
let databaseUrl: string;
beforeAll(async () => {
  databaseUrl = await newTestDatabase();
  await applyMigrations(databaseUrl);
  db = openAppDatabase(databaseUrl);
});
afterAll(async () => {
  await db?.close();
});

const mac = Buffer.alloc(32, 7);
const answer = { kind: 'error', code: 'INTERNAL', message: 'x' } as const;

describe('ForwardLedger: writes of one turn, one statement', () => {
  it('two markSent of one key in the same turn: exactly one moves it; other keys of the turn move independently', async () => {
    const ledger = new ForwardLedger(db);
    for (const k of ['a', 'b', 'c']) expect(await ledger.claim('tx-ledger-1', k, mac)).toEqual({ claimed: true });
    const [a1, a2, b, missing] = await Promise.all([ledger.markSent('tx-ledger-1', 'a', 11), ledger.markSent('tx-ledger-1', 'a', 12), ledger.markSent('tx-ledger-1', 'b', 13), ledger.markSent('tx-ledger-1', 'zz', 14)]);
    expect([a1, a2].filter(Boolean)).toHaveLength(1);
    expect(b).toBe(true);
    expect(missing).toBe(false);
    // Already sent: a later markSent does not move it again.
    expect(await ledger.markSent('tx-ledger-1', 'b', 15)).toBe(false);
    const rows = await query(databaseUrl, "SELECT idempotency_key, state, access_log_index FROM forward_requests WHERE transaction_id = 'tx-ledger-1' ORDER BY idempotency_key");
    expect(rows.map((r) => [r.idempotency_key, r.state, r.access_log_index === null ? null : Number(r.access_log_index)])).toEqual([
      ['a', 'sent', a1 ? 11 : 12],
      ['b', 'sent', 13],
      ['c', 'pending', null],
    ]);
  });

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
});
