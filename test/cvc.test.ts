/**
 * The card security code, held only until authorization (issue 18 item 4; SECURITY.md "The card
 * security code"). Everything real: HTTPS with the dev client certificates (checkout submits,
 * processor acme releases with purpose `authorize`), PostgreSQL, the local KMS endpoint through
 * the real AWS SDK client. The attacker's access is the database: the runtime role (the
 * service's own pool) and the superuser (the test database URL), with the same KMS.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cardTransaction, newTestDatabase, startTestPaylog, type TestPaylog } from './helpers/paylog.js';
import { query } from './helpers/db.js';
import { hasToken, leavesWithToken, logLinesWithToken } from './helpers/log-tokens.js';
import { decodeLeaf } from '../src/log/leaf.js';
import { checkLeaf } from '../src/audit/leaf-check.js';
import { encodeLeaf } from '../src/log/leaf.js';
import { encodeCbor } from '../src/log/leaf/cbor.js';
import { startDemoProcessor, type DemoProcessor } from '../scripts/demo-processor.js';
import { DEMO_AUTHORIZATION_PATH, DEMO_AUTHORIZATION_TEMPLATE } from '../scripts/demo-checkout.js';

const code = (r: { json: any }) => r.json?.error?.code;
/** The CVC of most tests here; searched for as a token of its own (test/helpers/log-tokens.ts). */
const CVC = '7391';
const withCvc = (cvc: string = CVC, overrides: Record<string, unknown> = {}): Record<string, any> => {
  const b = cardTransaction(overrides);
  return { ...b, paymentMethod: { ...b.paymentMethod, cvc } };
};
const release = (t: TestPaylog, id: string, purpose = 'authorize') => t.call('processor-acme', 'POST', `/v1/transactions/${id}/release`, { purpose });

async function leaves(url: string): Promise<{ index: number; bytes: Buffer; leaf: any }[]> {
  const rows = await query<{ idx: string; leaf: Buffer }>(url, 'SELECT idx, leaf FROM log_entries ORDER BY idx');
  return rows.map((r) => ({ index: Number(r.idx), bytes: r.leaf, leaf: decodeLeaf(r.leaf) as any }));
}

describe('a CVC is accepted only as paymentMethod.cvc of a card, used once, then gone', () => {
  let t: TestPaylog;
  beforeAll(async () => {
    t = await startTestPaylog();
  }, 120_000);
  afterAll(async () => t?.stop());

  it('the first authorizing release gets it; the second, and every other purpose, does not; the row is deleted', async () => {
    const body = withCvc();
    const s = await t.call('checkout', 'POST', '/v1/transactions', body);
    expect(s.status, s.text).toBe(201);
    // Searched as a token of its own: the answer's hex transaction id may hold the digits by chance.
    expect(hasToken(JSON.stringify(s.json), CVC)).toBe(false);
    const held = await query(t.databaseUrl, 'SELECT transaction_id, sealed FROM card_security_codes WHERE transaction_id = $1', [body.transactionId]);
    expect(held).toHaveLength(1);
    expect(hasToken(JSON.stringify(held[0].sealed), CVC)).toBe(false); // its key id is 24 hex digits

    const capture = await release(t, body.transactionId, 'capture');
    expect(capture.status, capture.text).toBe(200);
    expect(capture.json.paymentMethod.cvc).toBeUndefined();

    const first = await release(t, body.transactionId);
    expect(first.status, first.text).toBe(200);
    expect(first.json.paymentMethod).toMatchObject({ type: 'card', pan: '4111111111111111', cvc: CVC });
    expect(await query(t.databaseUrl, 'SELECT 1 FROM card_security_codes WHERE transaction_id = $1', [body.transactionId])).toHaveLength(0);

    const second = await release(t, body.transactionId);
    expect(second.status, second.text).toBe(200);
    expect(second.json.paymentMethod.cvc).toBeUndefined();
    expect(second.json.paymentMethod.pan).toBe('4111111111111111');
  });

  it('concurrent authorizing releases: exactly one gets the CVC (one DELETE … RETURNING)', async () => {
    const body = withCvc('123');
    expect((await t.call('checkout', 'POST', '/v1/transactions', body)).status).toBe(201);
    const answers = await Promise.all(Array.from({ length: 8 }, () => release(t, body.transactionId)));
    for (const a of answers) expect(a.status, a.text).toBe(200);
    expect(answers.filter((a) => a.json.paymentMethod.cvc === '123')).toHaveLength(1);
  });

  it('a replay (same body, another CVC, or none) is a replay and never stores a CVC again', async () => {
    const body = withCvc('456');
    expect((await t.call('checkout', 'POST', '/v1/transactions', body)).status).toBe(201);
    expect((await release(t, body.transactionId)).json.paymentMethod.cvc).toBe('456');
    for (const again of [body, { ...body, paymentMethod: { ...body.paymentMethod, cvc: '999' } }, { ...body, paymentMethod: { ...body.paymentMethod, cvc: undefined } }]) {
      const r = await t.call('checkout', 'POST', '/v1/transactions', again);
      expect(r.status, r.text).toBe(200); // the idempotency MAC does not cover the CVC
    }
    expect(await query(t.databaseUrl, 'SELECT 1 FROM card_security_codes WHERE transaction_id = $1', [body.transactionId])).toHaveLength(0);
    expect((await release(t, body.transactionId)).json.paymentMethod.cvc).toBeUndefined();
  });

  it('a CVC anywhere else is still refused (other names, metadata, other payment methods), as are track data and PINs', async () => {
    const b = cardTransaction();
    const refused: [Record<string, unknown>, string][] = [
      [{ ...b, metadata: { cvc: '123' } }, 'SENSITIVE_AUTHENTICATION_DATA'],
      [{ ...b, cvc: '123' }, 'SENSITIVE_AUTHENTICATION_DATA'],
      [{ ...b, paymentMethod: { ...b.paymentMethod, cvv: '123' } }, 'SENSITIVE_AUTHENTICATION_DATA'],
      [{ ...b, paymentMethod: { ...b.paymentMethod, securityCode: '123' } }, 'SENSITIVE_AUTHENTICATION_DATA'],
      [{ ...b, paymentMethod: { ...b.paymentMethod, CVC: '123' } }, 'SENSITIVE_AUTHENTICATION_DATA'],
      [{ ...b, paymentMethod: { ...b.paymentMethod, cvc: '123', track2: 'x' } }, 'SENSITIVE_AUTHENTICATION_DATA'],
      [{ ...b, paymentMethod: { ...b.paymentMethod, cvc: '123', pin: '1234' } }, 'SENSITIVE_AUTHENTICATION_DATA'],
      [{ ...b, paymentMethod: { type: 'iban', iban: 'DE89370400440532013000', holderName: 'J Q', cvc: '123' } }, 'SENSITIVE_AUTHENTICATION_DATA'],
      [{ ...b, paymentMethod: { ...b.paymentMethod, cvc: '12' } }, 'VALIDATION_FAILED'],
      [{ ...b, paymentMethod: { ...b.paymentMethod, cvc: '12345' } }, 'VALIDATION_FAILED'],
      [{ ...b, paymentMethod: { ...b.paymentMethod, cvc: 123 } }, 'VALIDATION_FAILED'],
      [{ ...b, paymentMethod: { ...b.paymentMethod, cvc: '１２３' } }, 'VALIDATION_FAILED'],
    ];
    for (const [body, want] of refused) {
      const r = await t.call('checkout', 'POST', '/v1/transactions', body);
      expect([r.status, code(r)], JSON.stringify(body)).toEqual([422, want]);
      expect(r.text).not.toContain('123');
    }
  });

  it('the CVC is never in a leaf (in any form), a log line, or any database table but its sealed row', async () => {
    const body = withCvc();
    expect((await t.call('checkout', 'POST', '/v1/transactions', body)).status).toBe(201);
    // While held: the only row that has anything of it is the sealed one (no plaintext anywhere).
    const dump = JSON.stringify(await query(t.databaseUrl, "SELECT to_jsonb(t) AS r FROM transactions t WHERE transaction_id = $1", [body.transactionId]));
    expect(hasToken(dump, CVC)).toBe(false); // the row holds ~60 hex digits (MAC, fingerprint, id)
    await release(t, body.transactionId);
    const all = await leaves(t.databaseUrl);
    // As a value of its own in any text of any leaf (not a byte search: the leaves' hex ids hold
    // four given digits by chance about once in a thousand runs; test/helpers/log-tokens.ts).
    expect(leavesWithToken(all.map((l) => l.bytes), CVC)).toEqual([]);
    for (const l of all) {
      expect(JSON.stringify(l.leaf, (_k, v) => (v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v))).not.toMatch(/cvc|securityCode/i);
      expect('leaf' in checkLeaf(l.index, l.bytes)).toBe(true);
    }
    // No digest of it either: SHA-256 of the CVC (hex, base64) appears in no leaf.
    const digest = createHash('sha256').update(CVC).digest();
    for (const l of all) expect(l.bytes.includes(digest)).toBe(false);
    expect(logLinesWithToken(t.logLines, CVC)).toEqual([]);
  });
});

describe('the forward takes the CVC once (issue 18: `{{card.cvc}}`), against the demo processor over real HTTPS', () => {
  let t: TestPaylog;
  let processor: DemoProcessor;
  let dir: string;
  beforeAll(async () => {
    t = await startTestPaylog();
    dir = mkdtempSync(join(tmpdir(), 'paylog-cvc-processor-'));
    processor = await startDemoProcessor({ port: 0, dir });
    const put = await t.call('admin', 'PUT', '/v1/admin/processors/acme/destinations/demo', { url: processor.url, paths: [DEMO_AUTHORIZATION_PATH], methods: ['POST'], caPem: processor.caPem, allowPrivateNetwork: true });
    expect(put.status, put.text).toBeLessThan(300);
  }, 120_000);
  afterAll(async () => {
    await processor?.close();
    await t?.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const forward = (id: string, key: string) =>
    t.call('checkout', 'POST', `/v1/transactions/${id}/forward`, { destination: 'demo', method: 'POST', path: DEMO_AUTHORIZATION_PATH, headers: { 'content-type': 'application/json' }, body: DEMO_AUTHORIZATION_TEMPLATE, purpose: 'authorize' }, { headers: { 'idempotency-key': key } });

  it('the first forward sends it (authorized, card number masked in the answer); a second forward that needs it is refused CVC_NOT_AVAILABLE and sends nothing', async () => {
    const body = withCvc('5308');
    expect((await t.call('checkout', 'POST', '/v1/transactions', body)).status).toBe(201);
    const first = await forward(body.transactionId, 'k1');
    expect(first.status, first.text).toBe(200);
    expect(first.json.status).toBe(200);
    expect(JSON.parse(first.json.body)).toMatchObject({ status: 'authorized' });
    expect(first.json.masked).toBeGreaterThanOrEqual(1);
    expect(first.text).not.toContain('4111111111111111');
    expect(await query(t.databaseUrl, 'SELECT 1 FROM card_security_codes WHERE transaction_id = $1', [body.transactionId])).toHaveLength(0);
    const second = await forward(body.transactionId, 'k2');
    expect([second.status, code(second)], second.text).toEqual([422, 'CVC_NOT_AVAILABLE']);
    // The retry of the first key answers the recorded outcome, and takes nothing.
    const retry = await forward(body.transactionId, 'k1');
    expect(retry.status, retry.text).toBe(200);
    expect(JSON.parse(retry.json.body)).toMatchObject({ status: 'authorized' });
    // An authorizing release after the forward gets no CVC either.
    expect((await release(t, body.transactionId)).json.paymentMethod.cvc).toBeUndefined();
    expect(logLinesWithToken(t.logLines, '5308')).toEqual([]);
  });
});

describe('across instances: two paylogs on one database', () => {
  it('a CVC submitted to one instance is taken by the other; raced from both, exactly one gets it', { timeout: 180_000 }, async () => {
    const databaseUrl = await newTestDatabase();
    const dataDir = mkdtempSync(join(tmpdir(), 'paylog-cvc-two-'));
    const a = await startTestPaylog({ databaseUrl, dataDir });
    const b = await startTestPaylog({ databaseUrl, dataDir });
    try {
      const one = withCvc('246');
      expect((await a.call('checkout', 'POST', '/v1/transactions', one)).status).toBe(201);
      expect((await release(b, one.transactionId)).json.paymentMethod.cvc).toBe('246');
      expect((await release(a, one.transactionId)).json.paymentMethod.cvc).toBeUndefined();
      for (let i = 0; i < 3; i++) {
        const two = withCvc('975');
        expect((await b.call('checkout', 'POST', '/v1/transactions', two)).status).toBe(201);
        const answers = await Promise.all([release(a, two.transactionId), release(b, two.transactionId), release(a, two.transactionId), release(b, two.transactionId)]);
        expect(answers.filter((r) => r.json.paymentMethod.cvc === '975')).toHaveLength(1);
      }
    } finally {
      await b.stop();
      await a.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('the cvc_destroyed leaf holds one hour and two counts, nothing else (the verifier decodes it strictly)', () => {
  const hour = Date.UTC(2026, 5, 1, 10);
  const good = { v: 3, type: 'key_event', time: hour + 3_700_000, event: 'cvc_destroyed', actor: 'system', periodStart: hour, periodEnd: hour + 3_600_000, counts: { used: 2, expired: 1 } };
  it('accepts the well-formed leaf and refuses any other shape', () => {
    expect('leaf' in checkLeaf(0, encodeLeaf(good as any))).toBe(true);
    const bad: Record<string, unknown>[] = [
      { ...good, transactionId: 'ord-1' },
      { ...good, keyName: 'x' },
      { ...good, periodEnd: hour + 7_200_000 },
      { ...good, periodStart: hour + 1, periodEnd: hour + 3_600_001 },
      { ...good, counts: { used: 1 } },
      { ...good, counts: { used: 1, expired: 0, other: 1 } },
      { ...good, v: 2 },
    ];
    for (const leaf of bad) {
      // Written with the bare CBOR encoder (the leaf encoder would refuse it): what a forged log holds.
      expect(() => encodeLeaf(leaf as any), JSON.stringify(leaf)).toThrow();
      expect('failure' in checkLeaf(0, encodeCbor(leaf as any)), JSON.stringify(leaf)).toBe(true);
    }
  });
});

describe('a database copy cannot recover a held CVC (the key never reaches the database or KMS)', () => {
  let databaseUrl: string;
  let dataDir: string;
  beforeAll(async () => {
    databaseUrl = await newTestDatabase();
    dataDir = mkdtempSync(join(tmpdir(), 'paylog-cvc-copy-'));
  });
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it('a copy of the sealed row taken BEFORE its use, restored by the superuser into a restarted paylog (same database, same KMS, same data directory) opens nothing', { timeout: 180_000 }, async () => {
    const first = await startTestPaylog({ databaseUrl, dataDir });
    const body = withCvc('2468');
    let copy: { transaction_id: string; sealed: unknown; expires_at: Date } | undefined;
    try {
      expect((await first.call('checkout', 'POST', '/v1/transactions', body)).status).toBe(201);
      [copy] = await query(databaseUrl, 'SELECT transaction_id, sealed, expires_at FROM card_security_codes WHERE transaction_id = $1', [body.transactionId]);
      expect(copy).toBeDefined();
    } finally {
      await first.stop();
    }
    // The whole database as the superuser sees it, after the only process that held the key stopped.
    const keys = await query(databaseUrl, 'SELECT key_id, public_key FROM cvc_holder_keys');
    expect(keys.map((k) => k.key_id)).not.toContain(Object.keys(copy!.sealed as object)[0]);
    const second = await startTestPaylog({ databaseUrl, dataDir });
    try {
      await query(databaseUrl, 'INSERT INTO card_security_codes (transaction_id, sealed, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING', [copy!.transaction_id, copy!.sealed, copy!.expires_at]);
      const r = await release(second, body.transactionId);
      expect(r.status, r.text).toBe(200);
      expect(r.json.paymentMethod.cvc).toBeUndefined();
      // And after a use, a copy of the table holds nothing of it.
      const other = withCvc('1357');
      expect((await second.call('checkout', 'POST', '/v1/transactions', other)).status).toBe(201);
      expect((await release(second, other.transactionId)).json.paymentMethod.cvc).toBe('1357');
      expect(await query(databaseUrl, 'SELECT * FROM card_security_codes WHERE transaction_id = $1', [other.transactionId])).toHaveLength(0);
    } finally {
      await second.stop();
    }
  });
});

describe('PAYLOG_CVC_TTL: an unused CVC is destroyed; destructions are logged once per period', () => {
  it('after the TTL the CVC is gone (swept), an authorizing release gets none, and one cvc_destroyed leaf per hour counts used and expired', { timeout: 120_000 }, async () => {
    let now = new Date(Date.UTC(2026, 5, 1, 10, 5));
    const t = await startTestPaylog({ env: { PAYLOG_CVC_TTL: 'PT2S' }, clock: () => now });
    try {
      const used = withCvc('111');
      const expired = withCvc('222');
      expect((await t.call('checkout', 'POST', '/v1/transactions', used)).status).toBe(201);
      expect((await t.call('checkout', 'POST', '/v1/transactions', expired)).status).toBe(201);
      expect((await release(t, used.transactionId)).json.paymentMethod.cvc).toBe('111');
      now = new Date(now.getTime() + 3_000);
      // The sweep (every TTL here) destroys the expired one without anyone asking.
      await expect.poll(async () => (await query(t.databaseUrl, 'SELECT 1 FROM card_security_codes')).length, { timeout: 20_000, interval: 500 }).toBe(0);
      expect((await release(t, expired.transactionId)).json.paymentMethod.cvc).toBeUndefined();
      // The period is logged once it is over (plus a minute of grace).
      now = new Date(Date.UTC(2026, 5, 1, 11, 2));
      const destroyed = async () => (await leaves(t.databaseUrl)).filter((l) => l.leaf.type === 'key_event' && l.leaf.event === 'cvc_destroyed');
      await expect.poll(async () => (await destroyed()).length, { timeout: 20_000, interval: 500 }).toBe(1);
      const [leaf] = await destroyed();
      expect(leaf!.leaf).toMatchObject({ v: 3, actor: 'system', periodStart: Date.UTC(2026, 5, 1, 10), periodEnd: Date.UTC(2026, 5, 1, 11), counts: { used: 1, expired: 1 } });
      expect('leaf' in checkLeaf(leaf!.index, leaf!.bytes)).toBe(true);
      // Not logged twice.
      await new Promise((r) => setTimeout(r, 3_000));
      expect(await destroyed()).toHaveLength(1);
    } finally {
      await t.stop();
    }
  });
});
