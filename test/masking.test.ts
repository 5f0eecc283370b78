import { readFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { describe, it, expect } from 'vitest';
import { PaylogError } from '../src/errors.js';
import { maskAccountNumber, maskIban, maskPan, maskedView, servedMaskedView } from '../src/validation/masking.js';
import { fingerprint, fingerprintV2, probeServedMac, requestMac, servedRequestMac } from '../src/crypto/fingerprint.js';
import { canonicalJson } from '../src/crypto/canonical-json.js';
import type { PaymentMethod } from '../src/validation/transaction.js';

const fixtures = JSON.parse(
  readFileSync(new URL('./fixtures/payment-methods.json', import.meta.url), 'utf8'),
) as {
  cards: Array<{ pan: string; brand: string }>;
  ibans: Array<{ iban: string; country: string }>;
};

const digitsIn = (s: string) => (s.match(/\d/g) ?? []).length;

/** The PAN positions that a masked rendering reveals (a revealed digit must equal the PAN's). */
function revealedPositions(pan: string, masked: string): number {
  expect(masked).toHaveLength(pan.length);
  let n = 0;
  for (let i = 0; i < pan.length; i++) {
    if (masked[i] !== '*') {
      expect(masked[i]).toBe(pan[i]);
      n++;
    }
  }
  return n;
}

describe('maskPan (PCI DSS 3.4.1: at most BIN + last 4)', () => {
  it.each(fixtures.cards)('$brand $pan reveals at most BIN(6/8) + last 4', ({ pan }) => {
    const m = maskPan(pan);
    const binLen = pan.length >= 16 ? 8 : 6;
    expect(m.bin).toBe(pan.slice(0, binLen));
    expect(m.last4).toBe(pan.slice(-4));
    expect(revealedPositions(pan, m.masked)).toBe(binLen + 4);
    expect(digitsIn(m.masked)).toBeLessThanOrEqual(binLen + 4);
    expect(m.masked.slice(binLen, -4)).toMatch(/^\*+$/);
  });

  it('uses a 6-digit BIN for 15-digit Amex and 14-digit Diners', () => {
    expect(maskPan('378282246310005')).toEqual({ bin: '378282', last4: '0005', masked: '378282*****0005' });
    expect(maskPan('36259600000004')).toEqual({ bin: '362596', last4: '0004', masked: '362596****0004' });
    expect(maskPan('4111111111111111').masked).toBe('41111111****1111');
  });

  it('refuses non-PAN input without echoing it', () => {
    for (const bad of ['4111 1111 1111 1111', '12345', '41111111111111111111', '']) {
      let err: unknown;
      try {
        maskPan(bad);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(PaylogError);
      if (bad.length > 0) expect((err as PaylogError).message).not.toContain(bad);
    }
  });
});

describe('bank masking', () => {
  it('account numbers show at most the last 4 and hide at least 4', () => {
    expect(maskAccountNumber('000123456789')).toEqual({ last4: '6789', masked: '********6789' });
    expect(maskAccountNumber('12345678')).toEqual({ last4: '5678', masked: '****5678' });
    expect(maskAccountNumber('123456')).toEqual({ last4: '56', masked: '****56' });
    expect(maskAccountNumber('1234')).toEqual({ last4: '', masked: '****' });
  });

  it.each(fixtures.ibans)('IBAN $iban keeps only the first 4 and last 4', ({ iban, country }) => {
    const m = maskIban(iban);
    expect(m.country).toBe(country);
    expect(m.last4).toBe(iban.slice(-4));
    expect(m.masked).toBe(iban.slice(0, 4) + '*'.repeat(iban.length - 8) + iban.slice(-4));
    expect(m.masked.replace(/\*/g, '')).toHaveLength(8);
  });
});

describe('maskedView (what every principal is served; issue 17: no BIN)', () => {
  it('card: brand, last 4, expiry — no BIN, no PAN, no holder name', () => {
    const pm: PaymentMethod = { type: 'card', pan: '5555555555554444', expiryMonth: 3, expiryYear: 2030, holderName: 'Jane Q Customer' };
    const view = maskedView(pm);
    expect(view).toEqual({ type: 'card', brand: 'mastercard', last4: '4444', expiryMonth: 3, expiryYear: 2030 });
    const json = JSON.stringify(view);
    expect(json).not.toContain('Jane');
    expect(json).not.toContain(pm.pan);
    expect(json).not.toContain('555555');
  });

  it.each(fixtures.cards)('$brand $pan: only the brand and the last four digits come from the PAN', ({ pan, brand }) => {
    const view = maskedView({ type: 'card', pan, expiryMonth: 1, expiryYear: 2030, holderName: 'A' });
    expect(view).toEqual({ type: 'card', brand, last4: pan.slice(-4), expiryMonth: 1, expiryYear: 2030 });
  });

  it('servedMaskedView drops the BIN a record stored before issue 17 holds; identity for a record stored now', () => {
    expect(servedMaskedView({ type: 'card', brand: 'visa', bin: '41111111', last4: '1111', expiryMonth: 1, expiryYear: 2030 })).toEqual({ type: 'card', brand: 'visa', last4: '1111', expiryMonth: 1, expiryYear: 2030 });
    const now = maskedView({ type: 'iban', iban: 'GB82WEST12345698765432', bic: 'NWBKGB2L', holderName: 'Jane' }) as unknown as Record<string, unknown>;
    expect(servedMaskedView(now)).toEqual(now);
  });

  it('us_bank_account: routing number, last 4, account type', () => {
    const view = maskedView({ type: 'us_bank_account', accountNumber: '000123456789', routingNumber: '011000015', accountType: 'savings', holderName: 'Jane' });
    expect(view).toEqual({ type: 'us_bank_account', routingNumber: '011000015', last4: '6789', accountType: 'savings' });
    expect(JSON.stringify(view)).not.toContain('000123456789');
  });

  it('iban: country, last 4 and BIC only if given', () => {
    expect(maskedView({ type: 'iban', iban: 'DE89370400440532013000', holderName: 'Jane' })).toEqual({ type: 'iban', country: 'DE', last4: '3000' });
    expect(maskedView({ type: 'iban', iban: 'GB82WEST12345698765432', bic: 'NWBKGB2L', holderName: 'Jane' })).toEqual({ type: 'iban', country: 'GB', last4: '5432', bic: 'NWBKGB2L' });
  });
});

describe('fingerprint and requestMac', () => {
  // A fixed key: the fingerprint must not contain the PAN's '1111', which a random key's
  // fingerprint (22 base64url characters) does by chance about once in a million runs.
  const key = createHash('sha256').update('test/masking.test.ts fingerprint key').digest();
  const card: PaymentMethod = { type: 'card', pan: '4111111111111111', expiryMonth: 12, expiryYear: 2029, holderName: 'A' };

  it('is stable for the same account and ignores non-identifying fields', () => {
    const fp = fingerprint(key, card);
    expect(fp).toMatch(/^fp_[A-Za-z0-9_-]{22}$/);
    expect(fingerprint(Buffer.from(key), { ...card, expiryYear: 2031, holderName: 'B' })).toBe(fp);
    expect(fp).not.toContain('1111');
  });

  it('depends on the key and on the account', () => {
    expect(fingerprint(randomBytes(32), card)).not.toBe(fingerprint(key, card));
    expect(fingerprint(key, { ...card, pan: '5555555555554444' })).not.toBe(fingerprint(key, card));
  });

  it('separates payment method types and field boundaries', () => {
    const a: PaymentMethod = { type: 'us_bank_account', routingNumber: '011000015', accountNumber: '12345678', accountType: 'checking', holderName: 'A' };
    const shifted: PaymentMethod = { ...a, routingNumber: '01100001', accountNumber: '512345678' };
    expect(fingerprint(key, shifted)).not.toBe(fingerprint(key, a));
    // same digit string as a card PAN and as an account → different fingerprints
    const asCard: PaymentMethod = { ...card, pan: '4111111111111111' };
    const asAccount: PaymentMethod = { ...a, routingNumber: '411111111', accountNumber: '1111111' };
    expect(fingerprint(key, asCard)).not.toBe(fingerprint(key, asAccount));
  });

  it('normalises IBAN formatting', () => {
    const iban: PaymentMethod = { type: 'iban', iban: 'DE89370400440532013000', holderName: 'A' };
    expect(fingerprint(key, { ...iban, iban: 'de89 3704 0044 0532 0130 00' })).toBe(fingerprint(key, iban));
    expect(fingerprint(key, { ...iban, bic: 'COBADEFF' })).toBe(fingerprint(key, iban));
  });

  it('requestMac is keyed, 32 bytes, and domain-separated from fingerprints', () => {
    const body = canonicalJson({ b: 1, a: 'x' });
    const mac = requestMac(key, body);
    expect(mac).toHaveLength(32);
    expect(requestMac(Buffer.from(key), body).equals(mac)).toBe(true);
    expect(requestMac(randomBytes(32), body).equals(mac)).toBe(false);
    expect(requestMac(key, canonicalJson({ b: 2, a: 'x' })).equals(mac)).toBe(false);
    // same message bytes under the two labels never agree
    const fpMacPrefix = Buffer.from(fingerprint(key, card).slice(3), 'base64url');
    expect(requestMac(key, 'card:4111111111111111').subarray(0, 16).equals(fpMacPrefix)).toBe(false);
  });

  it('refuses short keys', () => {
    expect(() => fingerprint(Buffer.alloc(16), card)).toThrow(PaylogError);
    expect(() => requestMac(Buffer.alloc(0), '{}')).toThrow(PaylogError);
  });
});

describe('fingerprint v2, served request MAC, probe MAC (issue 17)', () => {
  const key = randomBytes(32);
  const card: PaymentMethod = { type: 'card', pan: '4111111111111111', expiryMonth: 12, expiryYear: 2029, holderName: 'A' };

  it('fingerprintV2: fp2_, stable per processor and card, different per processor, never equal to a v1 fingerprint', () => {
    const fp = fingerprintV2(key, 'acme', card);
    expect(fp).toMatch(/^fp2_[A-Za-z0-9_-]{22}$/);
    expect(fingerprintV2(key, 'acme', { ...card, holderName: 'B', expiryYear: 2031 })).toBe(fp);
    expect(fingerprintV2(key, 'globex', card)).not.toBe(fp);
    expect(fp.slice(4)).not.toBe(fingerprint(key, card).slice(3));
  });

  it('servedRequestMac and probeServedMac are domain-separated from each other and from v1', () => {
    const body = canonicalJson({ a: 1 });
    expect(servedRequestMac(key, body).equals(requestMac(key, body))).toBe(false);
    expect(probeServedMac(key, body).equals(servedRequestMac(key, body))).toBe(false);
    expect(servedRequestMac(key, body)).toHaveLength(32);
  });
});

describe('canonicalJson (RFC 8785 subset)', () => {
  it.each([
    [null, 'null'],
    [true, 'true'],
    [0, '0'],
    [-0, '0'],
    [-42, '-42'],
    [Number.MAX_SAFE_INTEGER, '9007199254740991'],
    ['', '""'],
    [[], '[]'],
    [{}, '{}'],
    [[1, [2, { b: null, a: false }]], '[1,[2,{"a":false,"b":null}]]'],
    [{ b: 1, a: 2, c: { z: 'z', y: 'y' } }, '{"a":2,"b":1,"c":{"y":"y","z":"z"}}'],
    [{ '10': 1, '9': 2, a: 3, A: 4, _: 5 }, '{"10":1,"9":2,"A":4,"_":5,"a":3}'],
  ])('%j → %s', (value, expected) => {
    expect(canonicalJson(value)).toBe(expected);
  });

  it('sorts non-ASCII keys by UTF-16 code units (RFC 8785 §3.2.3 example)', () => {
    // RFC 8785 §3.2.3 sorting example: keys given out of order
    const value = {
      '\u20ac': 'Euro Sign',
      '\r': 'Carriage Return',
      '\ufb33': 'Hebrew Letter Dalet With Dagesh',
      '1': 'One',
      '\ud83d\ude00': 'Emoji: Grinning Face',
      '\u0080': 'Control',
      '\u00f6': 'Latin Small Letter O With Diaeresis',
    };
    expect(canonicalJson(value)).toBe(
      '{"\\r":"Carriage Return","1":"One","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis",' +
        '"\u20ac":"Euro Sign","\ud83d\ude00":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
    );
  });

  it('escapes strings like ECMAScript JSON.stringify (RFC 8785 §3.2.2.2)', () => {
    expect(canonicalJson('\u0000\u0008\t\n\u000b\f\r\u001f"\\/\u007f\u2028é😀')).toBe(
      '"\\u0000\\b\\t\\n\\u000b\\f\\r\\u001f\\"\\\\/\u007f\u2028é😀"',
    );
  });

  it.each([
    ['float', 1.5],
    ['NaN', Number.NaN],
    ['Infinity', Infinity],
    ['unsafe integer', 2 ** 53],
    ['1e21', 1e21],
    ['undefined', undefined],
    ['function', () => 1],
    ['symbol', Symbol('x')],
    ['bigint', 1n],
    ['nested float', { a: [1, 2.5] }],
    ['undefined member', { a: undefined }],
    ['Date', new Date(0)],
    ['Buffer', Buffer.from('x')],
    ['Map', new Map()],
    ['sparse array', [1, , 3]],
    ['lone surrogate', 'a\ud800'],
    ['lone surrogate key', { '\udc00': 1 }],
  ])('rejects %s', (_name, value) => {
    expect(() => canonicalJson(value)).toThrow(PaylogError);
  });

  it('rejects cycles and accepts shared (acyclic) references', () => {
    const shared = { x: 1 };
    expect(canonicalJson({ a: shared, b: shared })).toBe('{"a":{"x":1},"b":{"x":1}}');
    const cyclic: Record<string, unknown> = {};
    cyclic['self'] = cyclic;
    expect(() => canonicalJson(cyclic)).toThrow(PaylogError);
  });

  it('accepts null-prototype objects and is independent of insertion order', () => {
    const o = Object.create(null) as Record<string, unknown>;
    o['b'] = 1;
    o['a'] = 2;
    expect(canonicalJson(o)).toBe(canonicalJson({ a: 2, b: 1 }));
  });
});

describe('isCanonicalJsonText (RFC 8785 check without re-serialising)', () => {
  it('agrees with canonicalJson on canonical text and rejects every non-canonical variant', async () => {
    const { canonicalJson, isCanonicalJsonText } = await import('../src/crypto/canonical-json.js');
    const value = { b: [1, 'x', { d: null, c: true }], a: 'é\u0001"\\', '€': 5, é: 'ü' };
    const canon = canonicalJson(value);
    expect(isCanonicalJsonText(canon, JSON.parse(canon))).toBe(true);
    const variants = [
      canon.replace(',', ', '), // whitespace
      '{"b":1,"a":2}', // key order
      '{"a":"\\u0041"}', // needless escape
      '{"a":"\\ud800"}', // lone surrogate
      '{"a":1.5}', // not an integer
      '{"a":1e3}', // number form
      '{"a":9007199254740993}', // unsafe integer
    ];
    for (const v of variants) expect(isCanonicalJsonText(v, JSON.parse(v)), v).toBe(false);
  });
});
