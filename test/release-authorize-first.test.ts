/**
 * Issue 19 (src/services/release.ts): a release is authorized BEFORE the record is read or its
 * leaf decoded, so "not yours" and "does not exist" do the same work and answer alike. The
 * attacker is another processor with its own certificate over real mTLS; the record it targets
 * is one whose leaf does not decode as its transaction (a lookup row the runtime role planted,
 * pointing at another entry), so any leaf decode before authorization would answer 422 and tell
 * the attacker the id exists.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cardTransaction, startTestPaylog, type TestPaylog } from './helpers/paylog.js';
import { query } from './helpers/db.js';
import { decodeLeaf } from '../src/log/leaf.js';

describe('release authorizes before it decodes', () => {
  let t: TestPaylog;
  beforeAll(async () => {
    t = await startTestPaylog();
  });
  afterAll(async () => t?.stop());

  it("another processor gets the same 404 for acme's undecodable record as for an unknown id; the owner gets 422", async () => {
    const body = cardTransaction();
    expect((await t.call('checkout', 'POST', '/v1/transactions', body)).status).toBe(201);
    const all = await query<{ idx: string; leaf: Buffer }>(t.databaseUrl, 'SELECT idx, leaf FROM log_entries ORDER BY idx');
    const notATransaction = all.find((r) => decodeLeaf(r.leaf).type !== 'transaction')!.idx;
    const x = `ord-${randomBytes(6).toString('hex')}`;
    // The runtime role's access: a lookup row for acme pointing at an entry that is not its record.
    await t.paylog.database.pool.query('INSERT INTO transactions (transaction_id, log_index, request_mac, processor) VALUES ($1, $2, $3, $4)', [
      x,
      notATransaction,
      randomBytes(32),
      'acme',
    ]);
    const unknown = await t.call('processor-globex', 'POST', `/v1/transactions/ord-${randomBytes(6).toString('hex')}/release`, { purpose: 'capture' });
    const notYours = await t.call('processor-globex', 'POST', `/v1/transactions/${x}/release`, { purpose: 'capture' });
    expect(unknown.status).toBe(404);
    expect(notYours.status).toBe(unknown.status);
    expect(notYours.json.error.code).toBe(unknown.json.error.code);
    const own = await t.call('processor-acme', 'POST', `/v1/transactions/${x}/release`, { purpose: 'capture' });
    expect(own.status).toBe(422);
  });
});
