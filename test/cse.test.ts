/**
 * Client-side encryption (issue 12): JWK Set, JWE submission, binding, expiry, rotation, cache.
 * Encryption uses the browser module's own source (src/cse/browser/paylog-encrypt.ts) on Node's
 * WebCrypto; everything else is real (HTTPS + client certificates, PostgreSQL, local KMS).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKeyPair, exportJWK } from 'jose';
import { startTestPaylog, cardTransaction, fixtures, type TestPaylog } from './helpers/paylog.js';
import { encryptPaymentMethod, importPaylogKey, type PaylogKey, type PaymentMethod } from '../src/cse/browser/paylog-encrypt.js';
import { CseKeyStore } from '../src/cse/keys.js';
import { kidForTime, periodOfKid } from '../src/cse/key-names.js';
import { deriveP256Scalar } from '../src/cse/p256-key.js';
import { ClientSideDecryption } from '../src/cse/jwe.js';
import { loadConfig, ConfigError } from '../src/config.js';
import { isPaylogError } from '../src/errors.js';
import { decodeLeaf } from '../src/log/leaf.js';
import { runScript } from './helpers/cli.js';
import { join } from 'node:path';

let t: TestPaylog;
let key: PaylogKey;
const year = new Date().getUTCFullYear() + 3;
const card = (pan = '4111111111111111'): PaymentMethod => ({ type: 'card', pan, expiryMonth: 12, expiryYear: year, holderName: 'Jane Q Customer' });

async function encryptedBody(pm: PaymentMethod | Record<string, unknown>, o: { body?: Record<string, unknown>; bind?: Partial<{ transactionId: string; processor: string }>; iat?: number; key?: PaylogKey } = {}): Promise<Record<string, any>> {
  const body = cardTransaction(o.body);
  const jwe = await encryptPaymentMethod(
    o.key ?? key,
    pm as PaymentMethod,
    { transactionId: body.transactionId, processor: body.processor, ...o.bind },
    o.iat !== undefined ? { issuedAt: o.iat } : {},
  );
  return { ...body, paymentMethod: { type: 'encrypted', jwe } };
}

const submit = (body: unknown) => t.call('checkout', 'POST', '/v1/transactions', body);
const code = (r: { json: any }) => r.json?.error?.code;
const nowS = () => Math.floor(Date.now() / 1000);

beforeAll(async () => {
  t = await startTestPaylog();
  const r = await t.call('checkout', 'GET', '/v1/cse/jwks.json');
  key = await importPaylogKey(r.json);
});
afterAll(async () => t?.stop());

describe('GET /v1/cse/jwks.json', () => {
  it('serves the current public key to any client certificate, and never the private half', async () => {
    for (const who of ['checkout', 'processor-acme', 'auditor', 'admin'] as const) {
      const r = await t.call(who, 'GET', '/v1/cse/jwks.json');
      expect(r.status).toBe(200);
      expect(r.headers['content-type']).toMatch(/^application\/jwk-set\+json/);
      expect(r.json.keys).toHaveLength(1);
      const [k] = r.json.keys;
      expect(Object.keys(k).sort()).toEqual(['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y']);
      expect(k).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ECDH-ES', use: 'enc', kid: kidForTime(new Date(), 'month') });
    }
    expect((await t.call(null, 'GET', '/v1/cse/jwks.json')).status).toBe(401);
  });
});

describe('POST /v1/transactions with an encrypted payment method', () => {
  it('decrypts, stores like plaintext, and releases exactly what was encrypted', async () => {
    const body = await encryptedBody(card());
    const r = await submit(body);
    expect(r.status).toBe(201);
    expect(r.json.paymentMethod).toMatchObject({ type: 'card', last4: expect.any(String) });
    const rel = await t.call('processor-acme', 'POST', `/v1/transactions/${body.transactionId}/release`, { purpose: 'authorize' });
    expect(rel.status).toBe(200);
    expect(rel.json.paymentMethod).toEqual(card());
    expect(t.logLines.join('\n')).not.toContain('4111111111111111');
  });

  it('bank accounts too (us_bank_account, iban)', async () => {
    const aba = { type: 'us_bank_account', accountNumber: '000123456789', routingNumber: fixtures.us_routing_numbers[0]!.routingNumber, accountType: 'checking', holderName: 'Jane Q' } as const;
    const iban = { type: 'iban', iban: fixtures.ibans[0]!.iban, holderName: 'Jane Q' } as const;
    for (const pm of [aba, iban]) {
      const body = await encryptedBody(pm);
      expect((await submit(body)).status).toBe(201);
      const rel = await t.call('processor-acme', 'POST', `/v1/transactions/${body.transactionId}/release`, { purpose: 'authorize' });
      expect(rel.json.paymentMethod.type).toBe(pm.type);
    }
  });

  it('idempotency is over the decrypted content: a re-encrypted retry is 200, another card 409', async () => {
    const first = await encryptedBody(card());
    const r1 = await submit(first);
    expect(r1.status).toBe(201);
    const again = await encryptedBody(card(), { body: { transactionId: first.transactionId } });
    expect(again.paymentMethod.jwe).not.toBe(first.paymentMethod.jwe);
    const r2 = await submit(again);
    expect(r2.status).toBe(200);
    expect(r2.json.logIndex).toBe(r1.json.logIndex);
    const other = await encryptedBody(card('5555555555554444'), { body: { transactionId: first.transactionId } });
    expect(code(await submit(other))).toBe('IDEMPOTENCY_CONFLICT');
  });

  it('runs exactly the plaintext validation on the decrypted content (same codes)', async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ ...card(), pan: '4111111111111112' }, 'INVALID_CARD_NUMBER'],
      [{ ...card(), expiryYear: 2020 }, 'CARD_EXPIRED'],
      [{ ...card(), cvv: '123' }, 'SENSITIVE_AUTHENTICATION_DATA'],
      [{ type: 'iban', iban: fixtures.invalid_ibans[0]!.iban, holderName: 'J' }, 'INVALID_IBAN'],
      [{ type: 'us_bank_account', accountNumber: '000123456789', routingNumber: fixtures.invalid_us_routing_numbers[0]!.routingNumber, accountType: 'checking', holderName: 'J' }, 'INVALID_ROUTING_NUMBER'],
      [{ type: 'encrypted', jwe: 'a.b.c.d.e' }, 'VALIDATION_FAILED'],
      [{ ...card(), extra: 1 }, 'VALIDATION_FAILED'],
    ];
    for (const [pm, expected] of cases) {
      const r = await submit(await encryptedBody(pm));
      expect([r.status, code(r)]).toEqual([422, expected]);
      expect(r.text).not.toMatch(/4111111111111112|123"/);
    }
  });

  it('applies the encoding rule to the decrypted content too: NUL or a lone surrogate → 400 INVALID_ENCODING', async () => {
    for (const pm of [{ ...card(), holderName: 'Jane\u0000Doe' }, { ...card(), ['\ud800']: 1 }]) {
      const r = await submit(await encryptedBody(pm));
      expect([r.status, code(r)]).toEqual([400, 'INVALID_ENCODING']);
      expect(r.text).not.toContain('4111111111111111');
    }
  });

  it('checks the body as sent before any decryption (SAD beside the JWE, bad JWE shape, PAN in metadata)', async () => {
    const body = await encryptedBody(card());
    expect(code(await submit({ ...body, paymentMethod: { ...body.paymentMethod, cvv: '123' } }))).toBe('SENSITIVE_AUTHENTICATION_DATA');
    expect(code(await submit({ ...body, paymentMethod: { ...body.paymentMethod, pan: '4111111111111111' } }))).toBe('VALIDATION_FAILED');
    expect(code(await submit({ ...body, paymentMethod: { type: 'encrypted', jwe: 'not a jwe' } }))).toBe('VALIDATION_FAILED');
    expect(code(await submit({ ...body, metadata: { note: '4111 1111 1111 1111' } }))).toBe('VALIDATION_FAILED');
  });

  it('CSE_KEY_UNKNOWN for a key id paylog never published or has retired', async () => {
    for (const kid of ['paylog-cse-1999-01', 'paylog-cse-2999-01', 'someone-elses-key', 'paylog-cse-2026-13']) {
      const r = await submit(await encryptedBody(card(), { key: { ...key, kid } }));
      expect([r.status, code(r)]).toEqual([422, 'CSE_KEY_UNKNOWN']);
    }
  });

  it('CSE_DECRYPT_FAILED for tampering, a foreign key under our kid, or a header edited to rebind', async () => {
    const body = await encryptedBody(card());
    const parts = body.paymentMethod.jwe.split('.');
    const flip = (s: string) => (s[0] === 'A' ? 'B' : 'A') + s.slice(1);
    const tampered = [
      [parts[0], parts[1], parts[2], flip(parts[3]!), parts[4]].join('.'), // ciphertext
      [parts[0], parts[1], parts[2], parts[3], flip(parts[4]!)].join('.'), // tag
      [parts[0], parts[1], flip(parts[2]!), parts[3], parts[4]].join('.'), // iv
    ];
    for (const jwe of tampered) {
      const r = await submit({ ...body, paymentMethod: { type: 'encrypted', jwe } });
      expect([r.status, code(r)]).toEqual([422, 'CSE_DECRYPT_FAILED']);
    }
    // Rebinding by editing the protected header: authenticated decryption fails first.
    const header = JSON.parse(Buffer.from(parts[0]!, 'base64url').toString('utf8'));
    const other = cardTransaction();
    const rebound = Buffer.from(JSON.stringify({ ...header, transactionId: other.transactionId }), 'utf8').toString('base64url');
    const r = await submit({ ...other, paymentMethod: { type: 'encrypted', jwe: [rebound, ...parts.slice(1)].join('.') } });
    expect([r.status, code(r)]).toEqual([422, 'CSE_DECRYPT_FAILED']);
    // Encrypted to someone else's P-256 key but claiming our kid.
    const foreign = await generateKeyPair('ECDH-ES', { crv: 'P-256', extractable: true });
    const fk = await importPaylogKey({ keys: [{ ...(await exportJWK(foreign.publicKey)), kid: key.kid, alg: 'ECDH-ES', use: 'enc' }] });
    const r2 = await submit(await encryptedBody(card(), { key: fk }));
    expect([r2.status, code(r2)]).toEqual([422, 'CSE_DECRYPT_FAILED']);
  });

  it('CSE_BINDING_MISMATCH for another transaction or processor', async () => {
    const r1 = await submit(await encryptedBody(card(), { bind: { transactionId: 'ord-someone-else' } }));
    expect([r1.status, code(r1)]).toEqual([422, 'CSE_BINDING_MISMATCH']);
    const r2 = await submit(await encryptedBody(card(), { bind: { processor: 'globex' } }));
    expect([r2.status, code(r2)]).toEqual([422, 'CSE_BINDING_MISMATCH']);
    // The same blob replayed into another transaction.
    const body = await encryptedBody(card());
    const r3 = await submit({ ...cardTransaction(), paymentMethod: body.paymentMethod });
    expect(code(r3)).toBe('CSE_BINDING_MISMATCH');
  });

  it('CSE_EXPIRED past the maximum age (paylog clock) and for issue times in the future', async () => {
    const r1 = await submit(await encryptedBody(card(), { iat: nowS() - 15 * 60 - 5 }));
    expect([r1.status, code(r1)]).toEqual([422, 'CSE_EXPIRED']);
    const r2 = await submit(await encryptedBody(card(), { iat: nowS() + 10 * 60 }));
    expect([r2.status, code(r2)]).toEqual([422, 'CSE_EXPIRED']);
    const ok = await submit(await encryptedBody(card(), { iat: nowS() - 14 * 60 }));
    expect(ok.status).toBe(201);
  });

  it('one KMS Decrypt per key per cache TTL, not per submission', async () => {
    const before = t.paylog.cseKeys.stats.loads;
    const bodies = await Promise.all(Array.from({ length: 20 }, () => encryptedBody(card())));
    const rs = await Promise.all(bodies.map(submit));
    expect(rs.map((r) => r.status)).toEqual(bodies.map(() => 201));
    expect(t.paylog.cseKeys.stats.loads - before).toBe(0);
  });
});

describe('the log records client-side encryption', () => {
  it('a CSE submission is a v2 transaction leaf with cse.kid; a plaintext one has no marker; verify-log accepts the log', async () => {
    const enc = await encryptedBody(card());
    const plain = cardTransaction();
    const rEnc = await submit(enc);
    const rPlain = await submit(plain);
    expect([rEnc.status, rPlain.status]).toEqual([201, 201]);
    const entry = async (index: number) => {
      const r = await t.call('auditor', 'GET', `/v1/log/entries?start=${index}&end=${index + 1}`);
      expect(r.status).toBe(200);
      return decodeLeaf(Buffer.from(r.json.entries[0].leaf, 'base64')) as any;
    };
    const le = await entry(rEnc.json.logIndex);
    expect(le).toMatchObject({ v: 3, type: 'transaction', id: enc.transactionId, cse: { kid: key.kid } });
    const lp = await entry(rPlain.json.logIndex);
    expect(lp.cse).toBeUndefined();
    expect(Buffer.from(JSON.stringify(le)).includes('4111111111111111')).toBe(false);

    const pki = join(t.dataDir, 'pki');
    const v = await runScript('verify-log', ['--url', t.paylog.url, '--cacert', join(pki, 'ca.pem'), '--cert', join(pki, 'auditor.pem'), '--key', join(pki, 'auditor-key.pem'), '--state', join(t.dataDir, 'verify-state.json')]);
    expect(v.code, v.stdout + v.stderr).toBe(0);
  });
});

describe('CSE keys: rotation with overlap, single-flight cache, derivation', () => {
  const hour = 3600_000;
  const t0 = new Date(Date.UTC(2031, 4, 6, 10, 30));
  const store = (ttl = 300) => new CseKeyStore({ database: t.paylog.database, kms: t.paylog.kms, recordKeyEvent: (e) => t.paylog.keyEvents.record(e), legacyKmsKeyId: t.paylog.dataKeyId }, { period: 'hour', overlapS: 1800, cacheTtlS: ttl });

  it('a new key each period; the old one decrypts for the stated overlap, then is unknown', async () => {
    const s = store();
    const a = (await s.jwks(t0)).keys[0]!;
    const b = (await s.jwks(new Date(t0.getTime() + hour))).keys[0]!;
    expect([a.kid, b.kid]).toEqual(['paylog-cse-2031-05-06T10', 'paylog-cse-2031-05-06T11']);
    expect(b.x).not.toBe(a.x);
    const cse = new ClientSideDecryption(s, { maxAgeS: 900 });
    const body = cardTransaction();
    const ka = await importPaylogKey({ keys: [{ ...a }] });
    const at = (ms: number) => new Date(Date.UTC(2031, 4, 6, 11) + ms);
    const blob = async (when: Date) =>
      ({ ...body, paymentMethod: { type: 'encrypted', jwe: await encryptPaymentMethod(ka, card(), body as any, { issuedAt: Math.floor(when.getTime() / 1000) - 60 }) } });
    // Within the overlap (period end 11:00 + 30 min): still opens.
    const opened = await cse.open(await blob(at(29 * 60_000)), at(29 * 60_000));
    expect(opened.cse).toEqual({ kid: a.kid });
    expect(opened.body).toMatchObject({ paymentMethod: card() });
    // Past it: unknown.
    await expect(cse.open(await blob(at(30 * 60_000)), at(30 * 60_000))).rejects.toMatchObject({ code: 'CSE_KEY_UNKNOWN' });
    // A valid-looking kid of the current window that was never published: unknown, and not created.
    await expect(s.privateKeyFor('paylog-cse-2031-05-06T09', at(0))).rejects.toMatchObject({ code: 'CSE_KEY_UNKNOWN' });
    s.close();
  });

  it('concurrent misses share one KMS load; an entry is evicted after its TTL and reloaded', async () => {
    const s = store(1);
    const when = new Date(Date.UTC(2031, 4, 7, 8));
    await s.jwks(when); // creates
    s.close();
    const s2 = store(1);
    const kid = kidForTime(when, 'hour');
    await Promise.all(Array.from({ length: 10 }, () => s2.privateKeyFor(kid, when)));
    expect(s2.stats).toMatchObject({ loads: 1, hits: 9 });
    const deadline = Date.now() + 10_000;
    while (s2.stats.evictions === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(s2.stats.evictions).toBe(1);
    await s2.privateKeyFor(kid, when);
    expect(s2.stats.loads).toBe(2);
    s2.close();
    await expect(s2.privateKeyFor(kid, when)).rejects.toSatisfy(isPaylogError);
  });

  it('key ids name their period exactly; the scalar is deterministic and in [1, n-1]', () => {
    expect(periodOfKid('paylog-cse-2026-12')).toMatchObject({ period: 'month', start: Date.UTC(2026, 11, 1), end: Date.UTC(2027, 0, 1) });
    expect(periodOfKid('paylog-cse-2026-02-29')).toBeNull();
    expect(periodOfKid('paylog-cse-2026-12-01T24')).toBeNull();
    const seed = Buffer.alloc(32, 7);
    const d1 = deriveP256Scalar(seed);
    expect(d1).toHaveLength(32);
    expect(deriveP256Scalar(seed).equals(d1)).toBe(true);
    expect(deriveP256Scalar(Buffer.alloc(32, 8)).equals(d1)).toBe(false);
  });

  it('settings: the overlap may not be shorter than the maximum age', () => {
    expect(() => loadConfig({ PAYLOG_CSE_MAX_AGE_S: '900', PAYLOG_CSE_KEY_OVERLAP_S: '600' })).toThrow(ConfigError);
    expect(loadConfig({}).cse).toEqual({ maxAgeS: 900, keyPeriod: 'month', keyOverlapS: 86400, keyCacheTtlS: 300 });
  });
});
