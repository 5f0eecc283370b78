/**
 * Checkout path end to end: real HTTPS + client certificates, real PostgreSQL, real KMS client
 * against the local endpoint.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DATA_KEYS_WHOLE, query } from './helpers/db.js';
import { cardTransaction, fixtures, startTestPaylog, type TestPaylog } from './helpers/paylog.js';
import { hashLeaf, rootFromLeafHashes } from '../src/log/merkle.js';
import { createHash } from 'node:crypto';
import { decodeLeaf, envelopeFromLeaf } from '../src/log/leaf.js';
import { openEnvelopeV2 } from '../src/crypto/envelope-v2.js';
import { openEnvelope } from '../src/crypto/envelope.js';
import { STORED_REQUEST_MAC_BYTES } from '../src/services/transaction-seal.js';

let t: TestPaylog;
const pan = '4111111111111111';
beforeAll(async () => {
  t = await startTestPaylog();
});
afterAll(async () => {
  await t?.stop();
});

const sql = <T = any>(text: string, params: unknown[] = []) => query<T>(t.databaseUrl, text, params);

describe('POST /v1/transactions', () => {
  it('commits a card transaction and answers 201 with the masked view and log position', async () => {
    const body = cardTransaction();
    const r = await t.call('checkout', 'POST', '/v1/transactions', body);
    expect(r.status).toBe(201);
    expect(r.json.transactionId).toBe(body.transactionId);
    expect(typeof r.json.logIndex).toBe('number');
    expect(r.json.paymentMethod).toMatchObject({ type: 'card', brand: 'visa', last4: '1111' });
    expect(r.text).not.toContain('4111111111111111');
    expect(r.text).not.toContain('Jane Q Customer');
    expect(r.headers['cache-control']).toBe('no-store');

    const [row] = await sql('SELECT leaf FROM log_entries WHERE idx = $1', [r.json.logIndex]);
    expect(hashLeaf(row.leaf).toString('base64')).toBe(r.json.leafHash);
    const leaf = decodeLeaf(row.leaf);
    expect(leaf.type).toBe('transaction');
    expect(row.leaf.toString()).not.toContain('4111111111111111');
    expect(row.leaf.toString()).not.toContain('1111111111');
  });

  it('stores only ciphertext that opens, through the real KMS, to exactly what was sent', async () => {
    const body = cardTransaction();
    const r = await t.call('checkout', 'POST', '/v1/transactions', body);
    expect(r.status).toBe(201);
    // The sealed record is in the leaf (format v2); the wrapped data key beside the log.
    const [stored] = await sql(
      `SELECT e.leaf, d.wrapped_key, d.kms_key_id, d.epoch_id FROM transactions t JOIN log_entries e ON e.idx = t.log_index JOIN ${DATA_KEYS_WHOLE} d ON d.log_index = t.log_index WHERE t.transaction_id = $1`,
      [body.transactionId],
    );
    const leaf = decodeLeaf(stored.leaf);
    if (leaf.v !== 3 || leaf.type !== 'transaction') throw new Error('expected a v3 transaction leaf');
    const sealed = envelopeFromLeaf(leaf);
    expect(sealed.wrappedKeySha256).toEqual(createHash('sha256').update(stored.wrapped_key).digest());
    expect(Buffer.concat([sealed.ciphertext, sealed.iv, sealed.tag]).toString('latin1')).not.toContain('4111111111111111');
    if ('epochId' in sealed.key) {
      // Hierarchical mode (default): envelope v2; the epoch private key comes from KMS Decrypt.
      const epochId = sealed.key.epochId;
      expect(stored.epoch_id).toBe(epochId);
      const env2 = { version: 2 as const, salt: sealed.salt, iv: sealed.iv, ciphertext: sealed.ciphertext, tag: sealed.tag, keyCommitment: sealed.keyCommitment, wrappedKey: stored.wrapped_key, epochId };
      const b = { transactionId: body.transactionId, processor: 'acme', epochId };
      const plain2 = await t.paylog.epochs.withPrivateKey(epochId, (k) => openEnvelopeV2(k, b, env2));
      expect(JSON.parse(plain2.toString('utf8'))).toEqual(body.paymentMethod);
      await expect(t.paylog.epochs.withPrivateKey(epochId, (k) => openEnvelopeV2(k, { ...b, processor: 'globex' }, env2))).rejects.toMatchObject({ code: 'INTEGRITY_FAILURE' });
      return;
    }
    const kms = t.paylog.kms;
    const keys = {
      generateDataKey: (ctx: Record<string, string>) => kms.generateDataKey(t.paylog.dataKeyId, ctx),
      decryptDataKey: (w: Buffer, ctx: Record<string, string>, k: string) => kms.decryptDataKey(w, ctx, k),
    };
    const env = {
      version: 1 as const,
      iv: sealed.iv,
      ciphertext: sealed.ciphertext,
      tag: sealed.tag,
      keyCommitment: sealed.keyCommitment,
      wrappedKey: stored.wrapped_key,
      kmsKeyId: stored.kms_key_id,
      salt: sealed.salt,
    };
    const plain = await openEnvelope(keys, { transactionId: body.transactionId, processor: 'acme' }, env as never);
    expect(JSON.parse(plain.toString('utf8'))).toEqual(body.paymentMethod);
    // Bound to its transaction and processor: another binding does not open it.
    await expect(openEnvelope(keys, { transactionId: body.transactionId, processor: 'globex' }, env as never)).rejects.toMatchObject({
      code: 'INTEGRITY_FAILURE',
    });
  });

  it('replays identically with 200 and the same log index; a different body is 409', async () => {
    const body = cardTransaction();
    const first = await t.call('checkout', 'POST', '/v1/transactions', body);
    expect(first.status).toBe(201);
    const again = await t.call('checkout', 'POST', '/v1/transactions', body);
    expect(again.status).toBe(200);
    expect(again.json.logIndex).toBe(first.json.logIndex);
    expect(again.json.leafHash).toBe(first.json.leafHash);
    const changed = await t.call('checkout', 'POST', '/v1/transactions', { ...body, amount: { value: 1, currency: 'USD' } });
    expect(changed.status).toBe(409);
    expect(changed.json.error.code).toBe('IDEMPOTENCY_CONFLICT');
    const [{ n }] = await sql('SELECT count(*)::int AS n FROM log_entries WHERE position(convert_to($1, \'UTF8\') in leaf) > 0', [body.transactionId]);
    expect(n).toBe(1);
    // The stored idempotency MAC is the served MAC's first 8 bytes (issue 20, storage); rows
    // from before keep 16 or 32 and are judged the same way (the service decides from the leaf).
    const [{ len }] = await sql('SELECT octet_length(request_mac) AS len FROM transactions WHERE transaction_id = $1', [body.transactionId]);
    expect(len).toBe(STORED_REQUEST_MAC_BYTES);
  });

  it('a row stored by an earlier release (a 16- or 32-byte request_mac) answers replays and conflicts as before', async () => {
    for (const len of [16, 32]) {
      const body = cardTransaction();
      const first = await t.call('checkout', 'POST', '/v1/transactions', body);
      expect(first.status).toBe(201);
      // As the owner, the append-only triggers off: the row as an earlier release wrote it (its MAC's length; the bytes do not matter).
      await sql('ALTER TABLE transactions DISABLE TRIGGER ALL');
      try {
        await sql('UPDATE transactions SET request_mac = $2 WHERE transaction_id = $1', [body.transactionId, Buffer.alloc(len, 0xab)]);
      } finally {
        await sql('ALTER TABLE transactions ENABLE TRIGGER ALL');
      }
      const again = await t.call('checkout', 'POST', '/v1/transactions', body);
      expect([again.status, again.json.logIndex, again.json.leafHash], `stored ${len} bytes`).toEqual([200, first.json.logIndex, first.json.leafHash]);
      const changed = await t.call('checkout', 'POST', '/v1/transactions', { ...body, amount: { value: 1, currency: 'USD' } });
      expect(changed.status, `stored ${len} bytes`).toBe(409);
    }
  });

  it('N concurrent submissions of one new id make exactly one entry', async () => {
    const body = cardTransaction();
    const results = await Promise.all(Array.from({ length: 24 }, () => t.call('checkout', 'POST', '/v1/transactions', body)));
    const statuses = results.map((r) => r.status).sort();
    expect(statuses.filter((s) => s === 201)).toHaveLength(1);
    expect(statuses.filter((s) => s === 200)).toHaveLength(23);
    expect(new Set(results.map((r) => r.json.logIndex)).size).toBe(1);
    const [{ n }] = await sql('SELECT count(*)::int AS n FROM log_entries WHERE position(convert_to($1, \'UTF8\') in leaf) > 0', [body.transactionId]);
    expect(n).toBe(1);
  });

  it('group-commits concurrent appends, and the stored root equals a from-scratch RFC 9162 root', async () => {
    const before = await sql('SELECT count(*)::int AS n FROM tree_heads');
    const results = await Promise.all(
      Array.from({ length: 60 }, () => t.call('checkout', 'POST', '/v1/transactions', cardTransaction())),
    );
    expect(results.every((r) => r.status === 201)).toBe(true);
    const after = await sql('SELECT count(*)::int AS n FROM tree_heads');
    // Fewer tree heads than entries: batches carried more than one entry.
    expect(after[0].n - before[0].n).toBeLessThan(60);
    const leaves = await sql<{ idx: string; leaf: Buffer }>('SELECT idx, leaf FROM log_entries ORDER BY idx');
    leaves.forEach((l, i) => expect(Number(l.idx)).toBe(i));
    const [head] = await sql('SELECT size, root_hash FROM tree_heads ORDER BY size DESC LIMIT 1');
    expect(Number(head.size)).toBe(leaves.length);
    expect(rootFromLeafHashes(leaves.map((l) => hashLeaf(l.leaf))).equals(head.root_hash)).toBe(true);
    // Every tree head recorded along the way is the root of its prefix.
    const heads = await sql<{ size: string; root_hash: Buffer }>('SELECT size, root_hash FROM tree_heads ORDER BY size');
    for (const h of heads) {
      const prefix = leaves.slice(0, Number(h.size)).map((l) => hashLeaf(l.leaf));
      expect(rootFromLeafHashes(prefix).equals(h.root_hash)).toBe(true);
    }
  });

  it('accepts every fixture card, IBAN and US bank account', async () => {
    const year = new Date().getUTCFullYear() + 2;
    const methods = [
      ...fixtures.cards.map((c) => ({ type: 'card', pan: c.pan, expiryMonth: 1, expiryYear: year, holderName: 'Test Holder' })),
      ...fixtures.ibans.map((i) => ({ type: 'iban', iban: i.iban, holderName: 'Test Holder' })),
      ...fixtures.us_routing_numbers.map((u) => ({
        type: 'us_bank_account',
        routingNumber: u.routingNumber,
        accountNumber: '000123456789',
        accountType: 'checking',
        holderName: 'Test Holder',
      })),
    ];
    for (const paymentMethod of methods) {
      const r = await t.call('checkout', 'POST', '/v1/transactions', cardTransaction({ paymentMethod }));
      expect(r.status, JSON.stringify(r.json)).toBe(201);
      const secret = 'pan' in paymentMethod ? paymentMethod.pan : 'iban' in paymentMethod ? paymentMethod.iban : paymentMethod.accountNumber;
      expect(r.text).not.toContain(secret);
    }
  });
});

describe('bad input is a 4xx with a stable code, never a 5xx, never echoed', () => {
  const cases: Array<[string, () => { body?: unknown; raw?: string; headers?: Record<string, string> }, number, string]> = [
    ['invalid PAN (Luhn)', () => ({ body: cardTransaction({ paymentMethod: { type: 'card', pan: '4111111111111112', expiryMonth: 1, expiryYear: 2040, holderName: 'X' } }) }), 422, 'INVALID_CARD_NUMBER'],
    ['expired card', () => ({ body: cardTransaction({ paymentMethod: { type: 'card', pan, expiryMonth: 1, expiryYear: 2020, holderName: 'X' } }) }), 422, 'CARD_EXPIRED'],
    ['bad IBAN', () => ({ body: cardTransaction({ paymentMethod: { type: 'iban', iban: 'DE89370400440532013001', holderName: 'X' } }) }), 422, 'INVALID_IBAN'],
    ['bad routing number', () => ({ body: cardTransaction({ paymentMethod: { type: 'us_bank_account', routingNumber: '011000016', accountNumber: '1234567', accountType: 'checking', holderName: 'X' } }) }), 422, 'INVALID_ROUTING_NUMBER'],
    ['CVV', () => ({ body: cardTransaction({ paymentMethod: { type: 'card', pan, expiryMonth: 1, expiryYear: 2040, holderName: 'X', cvv: '737' } }) }), 422, 'SENSITIVE_AUTHENTICATION_DATA'],
    ['nested track data', () => ({ body: cardTransaction({ metadata: { note: 'x' }, extra: { deep: { track2: ';4111111111111111=2912?' } } }) }), 422, 'SENSITIVE_AUTHENTICATION_DATA'],
    ['unknown currency', () => ({ body: cardTransaction({ amount: { value: 1, currency: 'XYZ' } }) }), 422, 'UNSUPPORTED_CURRENCY'],
    ['negative amount', () => ({ body: cardTransaction({ amount: { value: -5, currency: 'USD' } }) }), 422, 'VALIDATION_FAILED'],
    ['fractional amount', () => ({ body: cardTransaction({ amount: { value: 1.5, currency: 'USD' } }) }), 422, 'VALIDATION_FAILED'],
    ['wrong types', () => ({ body: { transactionId: 5, processor: [], amount: 'lots', paymentMethod: null } }), 422, 'VALIDATION_FAILED'],
    ['array body', () => ({ body: [1, 2, 3] }), 422, 'VALIDATION_FAILED'],
    ['SQL-ish id', () => ({ body: cardTransaction({ transactionId: "x'; DROP TABLE log_entries;--" }) }), 422, 'VALIDATION_FAILED'],
    ['PAN as an unknown key', () => ({ body: { ...cardTransaction(), [pan]: 'x' } }), 422, 'VALIDATION_FAILED'],
    ['PAN in metadata', () => ({ body: cardTransaction({ metadata: { note: `card ${pan}` } }) }), 422, 'VALIDATION_FAILED'],
    ['IBAN in metadata', () => ({ body: cardTransaction({ metadata: { note: 'pay to DE89 3704 0044 0532 0130 00 please' } }) }), 422, 'VALIDATION_FAILED'],
    ['unregistered processor', () => ({ body: cardTransaction({ processor: 'initech' }) }), 422, 'UNKNOWN_PROCESSOR'],
    ['malformed JSON', () => ({ raw: `{"transactionId": "a", "pan": "${pan}"` }), 400, 'BAD_REQUEST'],
    ['not JSON', () => ({ raw: `pan=${pan}`, headers: { 'content-type': 'application/x-www-form-urlencoded' } }), 415, 'UNSUPPORTED_MEDIA_TYPE'],
    ['text/plain', () => ({ raw: JSON.stringify(cardTransaction()), headers: { 'content-type': 'text/plain' } }), 415, 'UNSUPPORTED_MEDIA_TYPE'],
    ['huge body', () => ({ raw: JSON.stringify({ ...cardTransaction(), metadata: { a: 'x'.repeat(2_000_000) } }) }), 413, 'PAYLOAD_TOO_LARGE'],
  ];
  for (const [name, make, status, code] of cases) {
    it(`${name} → ${status} ${code}`, async () => {
      const { body, raw, headers } = make();
      const r = await t.call('checkout', 'POST', '/v1/transactions', body, { ...(raw ? { raw } : {}), ...(headers ? { headers } : {}) });
      expect(r.status).toBe(status);
      expect(r.json?.error?.code).toBe(code);
      expect(typeof r.json.error.message).toBe('string');
      expect(r.text).not.toContain(pan);
      expect(r.text).not.toContain('737');
      expect(r.text).not.toMatch(/at .*\.ts:\d+/); // no stack
    });
  }

  it('CVV never reaches storage or logs', async () => {
    const cvv = '9173';
    const body = cardTransaction({ paymentMethod: { type: 'card', pan, expiryMonth: 1, expiryYear: 2040, holderName: 'X', securityCode: cvv } });
    const r = await t.call('checkout', 'POST', '/v1/transactions', body);
    expect(r.status).toBe(422);
    const rows = await sql('SELECT count(*)::int AS n FROM transactions WHERE transaction_id = $1', [body.transactionId]);
    expect(rows[0].n).toBe(0);
    // Digits can occur by chance in timestamps and hashes: look for the value as sent (a JSON
    // string) and for the field name, in every leaf and every log line.
    const dump = String((await sql(`SELECT string_agg(encode(leaf, 'escape'), '') AS s FROM log_entries`))[0].s ?? '');
    const logs = t.logLines.join('\n');
    for (const haystack of [dump, logs]) {
      expect(haystack).not.toContain(`"${cvv}"`);
      expect(haystack).not.toContain('securityCode');
    }
    const leaves = await sql('SELECT count(*)::int AS n FROM log_entries WHERE transaction_id = $1', [body.transactionId]);
    expect(leaves[0].n).toBe(0);
  });
});

describe('identity', () => {
  it('no client certificate → 401', async () => {
    const r = await t.call(null, 'POST', '/v1/transactions', cardTransaction());
    expect(r.status).toBe(401);
    expect(r.json.error.code).toBe('CLIENT_CERTIFICATE_REQUIRED');
  });
  it('only checkout may create (403 for every other role)', async () => {
    for (const who of ['processor-acme', 'auditor', 'admin'] as const) {
      const r = await t.call(who, 'POST', '/v1/transactions', cardTransaction());
      expect(r.status, who).toBe(403);
      expect(r.json.error.code).toBe('FORBIDDEN');
    }
  });
  it('GET /v1/transactions/{id} gives checkout masked metadata; unknown → 404', async () => {
    const body = cardTransaction();
    const created = await t.call('checkout', 'POST', '/v1/transactions', body);
    const r = await t.call('checkout', 'GET', `/v1/transactions/${body.transactionId}`);
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ transactionId: body.transactionId, logIndex: created.json.logIndex, processor: 'acme' });
    expect(r.text).not.toContain(pan);
    const missing = await t.call('checkout', 'GET', '/v1/transactions/does-not-exist');
    expect(missing.status).toBe(404);
  });
});

describe('operations', () => {
  it('healthz, readyz, metrics and openapi need no certificate and carry no card data', async () => {
    expect((await t.call(null, 'GET', '/healthz')).status).toBe(200);
    const ready = await t.call(null, 'GET', '/readyz');
    expect(ready.status).toBe(200);
    expect(ready.json.checks).toEqual({ database: true, kms: true });
    const m = await t.call(null, 'GET', '/metrics');
    expect(m.status).toBe(200);
    expect(m.text).toContain('paylog_log_batch_size_bucket');
    expect(m.text).toMatch(/paylog_log_size \d+/);
    expect(m.text).not.toContain(pan);
    const o = await t.call(null, 'GET', '/openapi.json');
    expect(o.status).toBe(200);
    expect(o.json.paths['/v1/transactions'].post).toBeDefined();
    expect(o.json.components.schemas.TransactionRequest.properties.paymentMethod).toBeDefined();
  });

  it('no PAN, account number or IBAN appears in any captured log line', async () => {
    expect(t.logLines.length).toBeGreaterThan(10);
    const all = t.logLines.join('\n');
    for (const c of fixtures.cards) expect(all).not.toContain(c.pan);
    for (const i of fixtures.ibans) expect(all).not.toContain(i.iban);
    expect(all).not.toContain('000123456789');
  });
});
