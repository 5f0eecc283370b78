/**
 * The submission hot path's schema check (src/validation/transaction-fast.ts) against the zod
 * schema it stands in for: whatever it accepts, `transactionRequestSchema` accepts with a
 * deep-equal output (same keys, same order); everything else is left to zod. Checked over valid
 * bodies of every payment-method type and mutations of each field at and around its bounds,
 * wrong types, missing and extra keys, and objects that are not plain JSON objects.
 */
import { isDeepStrictEqual } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parseTransactionRequestFast } from '../src/validation/transaction-fast.js';
import { transactionRequestSchema, validateTransactionRequest } from '../src/validation/transaction.js';

const card = () => ({
  transactionId: 'ord-2026-000123',
  processor: 'acme',
  amount: { value: 1999, currency: 'USD' },
  paymentMethod: { type: 'card', pan: '4111111111111111', expiryMonth: 12, expiryYear: 2030, holderName: 'Ada Lovelace' },
  metadata: { orderRef: 'A-1', 'shop.id': 'web:eu' },
});
const bank = () => ({
  transactionId: 'b.1',
  processor: 'acme-2',
  amount: { value: 1, currency: 'EUR' },
  paymentMethod: { type: 'us_bank_account', accountNumber: '000123456789', routingNumber: '011000015', accountType: 'savings', holderName: 'Ada' },
});
const iban = () => ({
  transactionId: 'i_1',
  processor: 'acme',
  amount: { value: Number.MAX_SAFE_INTEGER, currency: 'GBP' },
  paymentMethod: { type: 'iban', iban: 'GB82 WEST 1234 5698 7654 32', bic: 'DEUTDEFF500', holderName: 'Zoë Ünal 🙂' },
  metadata: {},
});
const VALID = [card, bank, iban, () => ({ ...card(), metadata: undefined }), () => (({ metadata: _m, ...r }) => r)(card())];

const astral = (n: number) => '🙂'.repeat(n);
const REPLACEMENTS: unknown[] = [
  undefined, null, true, 0, -0, 1, -1, 1.5, 11, 12, 13, 999, 1000, 9999, 10000, NaN, Infinity, -Infinity,
  2 ** 53, 2 ** 53 - 1, '', ' ', '   ', 'a', '1', 'USD', 'usd', 'US', 'USDX', 'card', 'iban', 'us_bank_account', 'encrypted',
  'checking', 'savings', 'DEUTDEFF', 'DEUTDEFF500', 'deutdeff', 'DEUTDEF', 'XXXXDEFF', '0123', '123', '4111111111111111',
  'acme', 'Acme', '-acme', 'ord-1', '-ord', 'a b', 'x\u0000y', 'x\u0007y', 'x\u2028y', 'x\u2029y', 'x\ud800y', 'x\tz', '\u00a0',
  'a'.repeat(63), 'a'.repeat(64), 'a'.repeat(65), 'a'.repeat(140), 'a'.repeat(141), 'a'.repeat(256), 'a'.repeat(257),
  'a'.repeat(280), 'a'.repeat(281), astral(139), astral(140), astral(141), `${astral(139)}a`, `a${astral(140)}`,
  [], ['a'], {}, { a: 'b' }, Object.create(null), new Date(0), new String('card'), new Number(12),
];

type Json = Record<string, unknown>;

/** No non-enumerable own keys at any depth (JSON.parse makes none). */
function onlyEnumerable(v: unknown): boolean {
  if (v === null || typeof v !== 'object') return true;
  return Reflect.ownKeys(v).length === Object.keys(v).length && Object.values(v).every(onlyEnumerable);
}

/** Every path to a value in `v` (objects only; the body has no arrays). */
function paths(v: unknown, at: string[] = []): string[][] {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return [at];
  return [at, ...Object.keys(v).flatMap((k) => paths((v as Json)[k], [...at, k]))];
}

function setAt(body: Json, path: string[], value: unknown, del = false): Json {
  const copy = structuredClone(body);
  let o: Json = copy;
  for (const k of path.slice(0, -1)) o = o[k] as Json;
  const last = path[path.length - 1]!;
  if (del) delete o[last];
  else o[last] = value;
  return copy;
}

function* mutations(): Generator<unknown> {
  for (const make of VALID) {
    const body = make() as Json;
    yield body;
    for (const p of paths(body)) {
      if (p.length === 0) continue;
      yield setAt(body, p, undefined, true);
      for (const r of REPLACEMENTS) yield setAt(body, p, r);
    }
    // Extra keys at every object level, including the card security code and reserved names.
    for (const p of paths(body)) {
      let o: unknown = body;
      for (const k of p) o = (o as Json)[k];
      if (o === null || typeof o !== 'object') continue;
      for (const extra of ['extra', 'cvc', 'bic', 'metadata', 'constructor', 'toString']) {
        for (const value of ['123', 'DEUTDEFF', {}, undefined]) yield p.length === 0 ? { ...body, [extra]: value } : setAt(body, p, { ...(o as Json), [extra]: value });
      }
      const withProtoKey = (x: unknown) => JSON.parse(JSON.stringify({ proto_key_: 1, ...(x as Json) }).replace('"proto_key_"', '"__proto__"')) as Json;
      yield p.length === 0 ? withProtoKey(body) : setAt(body, p, withProtoKey(o));
      const proto = Object.create({ inherited: 1 }) as Json;
      Object.assign(proto, o);
      yield p.length === 0 ? proto : setAt(body, p, proto);
      const hidden = { ...(o as Json) };
      Object.defineProperty(hidden, 'hidden', { value: 'x', enumerable: false });
      yield p.length === 0 ? hidden : setAt(body, p, hidden);
      const nullProto = Object.assign(Object.create(null) as Json, o);
      yield p.length === 0 ? nullProto : setAt(body, p, nullProto);
    }
    // metadata at and around its bounds
    const md = (n: number, key = (i: number) => `k${i}`, value = 'v') => Object.fromEntries(Array.from({ length: n }, (_, i) => [key(i), value]));
    for (const m of [md(0), md(1), md(19), md(20), md(21), md(2, () => 'a'.repeat(64)), md(1, () => 'a'.repeat(65)), md(1, () => '-a'), md(1, () => ''), md(1, () => 'a b'), md(1, () => 'ä'), md(1, undefined, 'x'.repeat(256)), md(1, undefined, 'x'.repeat(257)), md(1, undefined, 'a\nb'), md(1, () => 'constructor'), md(1, () => 'prototype'), md(1, () => 'hasOwnProperty'), md(1, () => '1'), md(1, () => 'a:b.c_d-e')]) {
      yield { ...body, metadata: m };
    }
  }
  yield null;
  yield [];
  yield 'body';
  yield 42;
  yield undefined;
}

describe('transaction-fast: parseTransactionRequestFast agrees with transactionRequestSchema', () => {
  it('accepts the usual bodies of every payment-method type (so the hot path skips zod)', () => {
    for (const make of [card, bank, iban]) expect(parseTransactionRequestFast(make())).toBeDefined();
  });

  it('accepts only what zod accepts, with the same output (deep-equal, same key order)', () => {
    let total = 0;
    let fastAccepted = 0;
    let zodAccepted = 0;
    const fellBack: string[] = [];
    for (const input of mutations()) {
      total++;
      const fast = parseTransactionRequestFast(input);
      const ref = transactionRequestSchema.safeParse(input);
      if (ref.success) zodAccepted++;
      if (fast === undefined) {
        // What JSON.parse can hand over, without the members left to zod on purpose, never falls back.
        const text = JSON.stringify(input) ?? '';
        const jsonLike = isDeepStrictEqual(JSON.parse(text || 'null'), input) && onlyEnumerable(input) && !/"(cvc|__proto__|constructor|prototype)"/.test(text);
        if (ref.success && jsonLike) fellBack.push(text);
        continue;
      }
      fastAccepted++;
      expect(ref.success, `fast path accepted what zod refuses: ${JSON.stringify(input)}`).toBe(true);
      expect(fast).toStrictEqual(ref.data);
      expect(JSON.stringify(fast)).toBe(JSON.stringify(ref.data));
    }
    expect(total).toBeGreaterThan(2000);
    if (process.env.SHOW_FALLBACK) console.log(fellBack.join("\n"));
    expect(fellBack).toEqual([]);
    expect(fastAccepted).toBeGreaterThan(zodAccepted / 2);
  });

  it('returns fresh objects (a caller mutating the result never touches the request)', () => {
    const body = card();
    const out = parseTransactionRequestFast(body)!;
    expect(out.paymentMethod).not.toBe(body.paymentMethod);
    expect(out.amount).not.toBe(body.amount);
    expect(out.metadata).not.toBe(body.metadata);
  });

  it('leaves every refusal to zod: validateTransactionRequest answers as before', () => {
    const bad = { ...card(), amount: { value: 0, currency: 'USD' } };
    expect(parseTransactionRequestFast(bad)).toBeUndefined();
    expect(() => validateTransactionRequest(bad, new Date('2026-01-01T00:00:00Z'))).toThrow(
      expect.objectContaining({ code: 'VALIDATION_FAILED', details: expect.objectContaining({ issues: [expect.objectContaining({ path: 'amount.value' })] }) }),
    );
  });
});
