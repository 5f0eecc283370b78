import { readFileSync } from 'node:fs';
import { describe, it, expect } from 'vitest';
import { PaylogError } from '../src/errors.js';
import {
  containsPanLikeIdentifier,
  containsPanLikeNumber,
  detectCardBrand,
  isValidRoutingNumber,
  sanitizePath,
  validateTransactionRequest,
} from '../src/validation/transaction.js';
import { classifySensitiveKey, findSensitiveAuthenticationData } from '../src/validation/sensitive.js';
import { ISO_4217_MINOR_UNITS, isSupportedCurrency } from '../src/validation/currencies.js';
import { canonicalJson } from '../src/crypto/canonical-json.js';

interface Fixtures {
  cards: Array<{ pan: string; brand: string }>;
  invalid_cards: Array<{ pan: string; why: string }>;
  ibans: Array<{ iban: string; country: string }>;
  invalid_ibans: Array<{ iban: string; why: string }>;
  us_routing_numbers: Array<{ routingNumber: string }>;
  invalid_us_routing_numbers: Array<{ routingNumber: string; why: string }>;
}
const fixtures = JSON.parse(
  readFileSync(new URL('./fixtures/payment-methods.json', import.meta.url), 'utf8'),
) as Fixtures;

const NOW = new Date('2026-11-29T12:00:00Z');
const PAN = '4111111111111111';
const ACCOUNT = '000123456789';
const CVV = '9173';

function cardBody(overrides: Record<string, unknown> = {}, pm: Record<string, unknown> = {}) {
  return {
    transactionId: 'ord-2026-000123',
    processor: 'acme',
    amount: { value: 12345, currency: 'USD' },
    paymentMethod: {
      type: 'card',
      pan: PAN,
      expiryMonth: 12,
      expiryYear: 2029,
      holderName: 'Jane Q Customer',
      ...pm,
    },
    metadata: { invoice: 'INV-77' },
    ...overrides,
  };
}
function bankBody(pm: Record<string, unknown> = {}) {
  return {
    ...cardBody(),
    paymentMethod: {
      type: 'us_bank_account',
      accountNumber: ACCOUNT,
      routingNumber: '011000015',
      accountType: 'checking',
      holderName: 'Jane Q Customer',
      ...pm,
    },
  };
}
function ibanBody(pm: Record<string, unknown> = {}) {
  return {
    ...cardBody(),
    amount: { value: 500, currency: 'EUR' },
    paymentMethod: { type: 'iban', iban: 'DE89370400440532013000', holderName: 'Jane Q', ...pm },
  };
}

/**
 * Asserts `raw` is rejected with a PaylogError of `code`, and that none of `secrets` appears in
 * what could reach a client or a log line (message + details).
 */
function expectRejected(raw: unknown, code: string, secrets: string[] = [PAN, ACCOUNT, CVV]) {
  let err: unknown;
  try {
    validateTransactionRequest(raw, NOW);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(PaylogError);
  const e = err as PaylogError;
  expect(e.code).toBe(code);
  const exposed = JSON.stringify({ message: e.message, details: e.details });
  for (const s of secrets) expect(exposed).not.toContain(s);
  return e;
}

describe('fixtures: payment methods', () => {
  it.each(fixtures.cards)('accepts card $pan ($brand)', ({ pan, brand }) => {
    const req = validateTransactionRequest(cardBody({}, { pan }), NOW);
    expect(req.paymentMethod).toMatchObject({ type: 'card', pan });
    expect(detectCardBrand(pan)?.id).toBe(brand);
  });

  it.each(fixtures.invalid_cards)('rejects card $pan ($why)', ({ pan }) => {
    expectRejected(cardBody({}, { pan }), 'INVALID_CARD_NUMBER', [pan, pan.replace(/\s/g, '')]);
  });

  it('rejects card numbers with separators, unknown brands and bad lengths', () => {
    for (const pan of ['4111 1111 1111 1111', '4111-1111-1111-1111', '', '0000000000000000', '41111111111111111111', '４１１１１１１１１１１１１１１１']) {
      expectRejected(cardBody({}, { pan }), 'INVALID_CARD_NUMBER');
    }
  });

  it.each(fixtures.ibans)('accepts IBAN $iban', ({ iban, country }) => {
    const req = validateTransactionRequest(ibanBody({ iban }), NOW);
    expect(req.paymentMethod).toMatchObject({ type: 'iban', iban });
    expect(iban.startsWith(country)).toBe(true);
  });

  it('normalises a friendly-format IBAN to electronic format', () => {
    const req = validateTransactionRequest(ibanBody({ iban: 'de89 3704 0044 0532 0130 00' }), NOW);
    expect(req.paymentMethod).toMatchObject({ iban: 'DE89370400440532013000' });
  });

  it.each(fixtures.invalid_ibans)('rejects IBAN $iban ($why)', ({ iban }) => {
    expectRejected(ibanBody({ iban }), 'INVALID_IBAN', [iban]);
  });

  it('rejects malformed IBANs', () => {
    for (const iban of ['', 'DE', 'XX89370400440532013000', 'DE8937040044053201300', 'DE89370400440532013000X', 'DE89_3704_0044_0532_0130_00']) {
      expectRejected(ibanBody({ iban }), 'INVALID_IBAN', ['0532013000']);
    }
  });

  it('checks the BIC shape and country (ISO 9362)', () => {
    expect(validateTransactionRequest(ibanBody({ bic: 'COBADEFFXXX' }), NOW).paymentMethod).toMatchObject({ bic: 'COBADEFFXXX' });
    expect(validateTransactionRequest(ibanBody({ bic: 'COBADEFF' }), NOW).paymentMethod).toMatchObject({ bic: 'COBADEFF' });
    for (const bic of ['cobadeff', 'COBA DE FF', 'COBAZZFF', 'COBADEF', 'C0BADEFF', 42]) {
      const e = expectRejected(ibanBody({ bic }), 'VALIDATION_FAILED');
      expect(JSON.stringify(e.details)).toContain('paymentMethod.bic');
    }
  });

  it.each(fixtures.us_routing_numbers)('accepts routing number $routingNumber', ({ routingNumber }) => {
    expect(isValidRoutingNumber(routingNumber)).toBe(true);
    const req = validateTransactionRequest(bankBody({ routingNumber }), NOW);
    expect(req.paymentMethod).toMatchObject({ type: 'us_bank_account', routingNumber });
  });

  it.each(fixtures.invalid_us_routing_numbers)('rejects routing number $routingNumber ($why)', ({ routingNumber }) => {
    expectRejected(bankBody({ routingNumber }), 'INVALID_ROUTING_NUMBER', [routingNumber, ACCOUNT]);
  });

  it('rejects routing numbers that are not 9 digits', () => {
    for (const routingNumber of ['', '01100001', '0110000155', '01100001a', '011 000 015']) {
      expectRejected(bankBody({ routingNumber }), 'INVALID_ROUTING_NUMBER');
    }
  });

  it('checks account number and account type', () => {
    expect(validateTransactionRequest(bankBody({ accountNumber: '1234' }), NOW).paymentMethod).toMatchObject({ accountNumber: '1234' });
    expect(validateTransactionRequest(bankBody({ accountNumber: '12345678901234567', accountType: 'savings' }), NOW).paymentMethod).toMatchObject({ accountType: 'savings' });
    for (const pm of [{ accountNumber: '123' }, { accountNumber: '123456789012345678' }, { accountNumber: '1234-5678' }, { accountNumber: 12345678 }, { accountType: 'brokerage' }]) {
      expectRejected(bankBody(pm), 'VALIDATION_FAILED');
    }
  });
});

describe('expiry', () => {
  it('a card is valid through the last instant of its expiry month (UTC)', () => {
    expect(() => validateTransactionRequest(cardBody({}, { expiryMonth: 11, expiryYear: 2026 }), new Date('2026-11-30T23:59:59.999Z'))).not.toThrow();
    expect(() => validateTransactionRequest(cardBody({}, { expiryMonth: 11, expiryYear: 2026 }), NOW)).not.toThrow();
    const e = (() => {
      try {
        validateTransactionRequest(cardBody({}, { expiryMonth: 11, expiryYear: 2026 }), new Date('2026-12-01T00:00:00Z'));
      } catch (err) {
        return err as PaylogError;
      }
      return undefined;
    })();
    expect(e?.code).toBe('CARD_EXPIRED');
  });

  it('rejects an expired card from last year and December rollover works', () => {
    expectRejected(cardBody({}, { expiryMonth: 12, expiryYear: 2025 }), 'CARD_EXPIRED');
    expect(() => validateTransactionRequest(cardBody({}, { expiryMonth: 12, expiryYear: 2026 }), new Date('2026-12-31T23:59:59Z'))).not.toThrow();
  });

  it('rejects out-of-range expiry fields as schema errors with sanitized details', () => {
    const e = expectRejected(cardBody({}, { expiryMonth: 13 }), 'VALIDATION_FAILED');
    expect(e.details).toMatchObject({ issues: [{ path: 'paymentMethod.expiryMonth', code: 'too_big' }] });
    for (const pm of [{ expiryMonth: 0 }, { expiryMonth: 1.5 }, { expiryMonth: '12' }, { expiryYear: 29 }, { expiryYear: 20290 }]) {
      expectRejected(cardBody({}, pm), 'VALIDATION_FAILED');
    }
  });
});

describe('currency and amount', () => {
  it('accepts ISO 4217 codes from the table and rejects unknown ones', () => {
    for (const currency of ['USD', 'EUR', 'JPY', 'BHD', 'CLF', 'XCG', 'ZWG']) {
      expect(validateTransactionRequest(cardBody({ amount: { value: 1, currency } }), NOW).amount.currency).toBe(currency);
    }
    for (const currency of ['XYZ', 'ANG', 'HRK', 'XAU', 'XXX', 'ZWL']) {
      expectRejected(cardBody({ amount: { value: 1, currency } }), 'UNSUPPORTED_CURRENCY');
    }
    for (const currency of ['usd', 'US', 'USDD', 840, '__proto__', 'toString']) {
      expect(() => validateTransactionRequest(cardBody({ amount: { value: 1, currency } }), NOW)).toThrow(PaylogError);
    }
  });

  it('has minor units for the table', () => {
    expect(ISO_4217_MINOR_UNITS.USD).toBe(2);
    expect(ISO_4217_MINOR_UNITS.JPY).toBe(0);
    expect(ISO_4217_MINOR_UNITS.KWD).toBe(3);
    expect(ISO_4217_MINOR_UNITS.UYW).toBe(4);
    expect(isSupportedCurrency('constructor')).toBe(false);
    expect(Object.keys(ISO_4217_MINOR_UNITS).length).toBeGreaterThan(150);
  });

  it('amount value is a positive safe integer', () => {
    for (const value of [0, -1, 1.5, 2 ** 53, '100', null, Number.NaN, Infinity]) {
      const e = expectRejected(cardBody({ amount: { value, currency: 'USD' } }), 'VALIDATION_FAILED');
      expect(JSON.stringify(e.details)).toContain('amount.value');
    }
    expect(validateTransactionRequest(cardBody({ amount: { value: Number.MAX_SAFE_INTEGER, currency: 'USD' } }), NOW).amount.value).toBe(Number.MAX_SAFE_INTEGER);
  });
});

describe('sensitive authentication data', () => {
  const sadKeys = ['cvv', 'CVV', 'cvc', 'Cvv2', 'cvc2', 'cid', 'csc', 'securityCode', 'security_code', 'SECURITY-CODE', 'track', 'track1', 'Track2', 'trackData', 'track_2_data', 'magstripe', 'mag_stripe', 'pin', 'PIN', 'pinBlock', 'PINBlock', 'pin-block', 'card_cvv', 'cardCvc', 'cardPin', 'ｃｖｖ', 'c\u200Bvv', 'c v v'];
  it.each(sadKeys)('classifies %j as SAD', (key) => {
    expect(classifySensitiveKey(key)).not.toBeNull();
  });

  it.each(['shipping', 'spinner', 'trackingNumber', 'description', 'invoice', 'pan', 'holderName', 'cidr', 'pinnacle', 'opinion', 'security', 'code'])(
    'does not classify %j as SAD',
    (key) => {
      expect(classifySensitiveKey(key)).toBeNull();
    },
  );

  it.each(sadKeys)('refuses %j at the top level, in paymentMethod and deep in metadata', (key) => {
    for (const body of [
      { ...cardBody(), [key]: CVV },
      cardBody({}, { [key]: CVV }),
      cardBody({ metadata: { a: { b: [{ c: { [key]: CVV } }] } } }),
    ]) {
      const e = expectRejected(body, 'SENSITIVE_AUTHENTICATION_DATA');
      expect(typeof (e.details as { field: string }).field).toBe('string');
    }
  });

  it('is checked before anything else', () => {
    expectRejected({ cvv: CVV, transactionId: 42, paymentMethod: null }, 'SENSITIVE_AUTHENTICATION_DATA');
    expectRejected([{ nested: [{ pinBlock: 'ABCD' }] }], 'SENSITIVE_AUTHENTICATION_DATA');
    expectRejected({ ...cardBody({}, { pan: 'garbage' }), __proto__x: 1, securityCode: CVV }, 'SENSITIVE_AUTHENTICATION_DATA');
  });

  it('reports a sanitized path (attacker-chosen keys become *) and our own term', () => {
    const e = expectRejected({ ...cardBody(), [PAN]: { cvv: CVV } }, 'SENSITIVE_AUTHENTICATION_DATA');
    expect(e.details).toEqual({ path: '*.*', field: 'cvv' });
    const e2 = expectRejected(cardBody({}, { [`${PAN}_cvv`]: CVV }), 'SENSITIVE_AUTHENTICATION_DATA');
    expect(e2.details).toEqual({ path: 'paymentMethod.*', field: 'cvv' });
  });

  it('walks hostile nesting without overflowing the stack', () => {
    let deep: unknown = { cvv: CVV };
    for (let i = 0; i < 100_000; i++) deep = [deep];
    expect(findSensitiveAuthenticationData(deep)?.term).toBe('cvv');
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic['self'] = cyclic;
    expect(findSensitiveAuthenticationData(cyclic)).toBeNull();
    expectRejected(cyclic, 'VALIDATION_FAILED');
  });
});

describe('hostile inputs', () => {
  it.each([
    ['null', null],
    ['undefined', undefined],
    ['number', 42],
    ['string', JSON.stringify(cardBody())],
    ['array', []],
    ['array of valid body', [cardBody()]],
    ['empty object', {}],
    ['boolean', true],
  ])('rejects %s as VALIDATION_FAILED', (_name, raw) => {
    expectRejected(raw, 'VALIDATION_FAILED');
  });

  it('rejects wrong types in every field with PaylogError', () => {
    const variants: unknown[] = [
      cardBody({ transactionId: 123 }),
      cardBody({ transactionId: null }),
      cardBody({ processor: ['acme'] }),
      cardBody({ amount: 12345 }),
      cardBody({ amount: { value: 1, currency: 'USD', extra: 1 } }),
      cardBody({ paymentMethod: 'card' }),
      cardBody({}, { type: 'crypto' }),
      cardBody({}, { type: undefined }),
      cardBody({}, { pan: 4111111111111111 }),
      cardBody({}, { holderName: { first: 'Jane' } }),
      cardBody({ metadata: [] }),
      cardBody({ metadata: { invoice: 77 } }),
      cardBody({ metadata: 'x' }),
      cardBody({ extra: true }),
    ];
    for (const v of variants) expectRejected(v, 'VALIDATION_FAILED');
  });

  it('reports zod issue codes with our own messages only', () => {
    const e = expectRejected(cardBody({}, { type: 'crypto' }), 'VALIDATION_FAILED');
    expect(e.message).toBe('paymentMethod.type must be one of card, us_bank_account, iban');
    expect(e.details).toMatchObject({ issues: [{ path: 'paymentMethod.type', code: 'invalid_union' }] });
  });

  it('sanitizes unknown keys that carry card data', () => {
    const e = expectRejected({ ...cardBody(), [PAN]: 'x' }, 'VALIDATION_FAILED');
    expect(e.details).toMatchObject({ issues: [{ path: '', code: 'unrecognized_keys' }] });
    expectRejected(cardBody({}, { [ACCOUNT]: true }), 'VALIDATION_FAILED');
    expectRejected(cardBody({ metadata: { [`k${PAN}`]: 'x' } }), 'VALIDATION_FAILED');
    expect(sanitizePath(['paymentMethod', PAN, 0, 'holderName'])).toBe('paymentMethod.*.*.holderName');
  });

  it('rejects huge strings in every string field without echoing them', () => {
    const huge = '9'.repeat(1_000_000);
    for (const body of [
      cardBody({ transactionId: huge }),
      cardBody({ processor: huge }),
      cardBody({}, { pan: huge }),
      cardBody({}, { holderName: huge }),
      cardBody({ metadata: { invoice: huge } }),
      cardBody({ metadata: { [huge]: 'x' } }),
      bankBody({ accountNumber: huge }),
      ibanBody({ iban: huge }),
    ]) {
      expectRejected(body, 'VALIDATION_FAILED', [huge.slice(0, 40)]);
    }
  });

  it('accepts RTL, zero-width and emoji holder names and rejects control characters', () => {
    for (const holderName of ['محمد بن سلمان', 'דוד כהן', 'Zoë \u200FO\u200D\'Brien', '👩‍👩‍👧 family', 'José Ñúñez', '李小龙', '😀'.repeat(140)]) {
      expect(validateTransactionRequest(cardBody({}, { holderName }), NOW).paymentMethod).toMatchObject({ holderName });
    }
    for (const holderName of ['Jane\u0000Doe', 'Jane\nDoe', 'Jane\tDoe', 'Jane\u007FDoe', 'Jane\u0085Doe', 'Jane\u2028Doe', 'Jane\uD800Doe', '\u001B[31mred']) {
      const e = expectRejected(cardBody({}, { holderName }), 'VALIDATION_FAILED');
      expect(e.details).toMatchObject({ issues: [{ path: 'paymentMethod.holderName', code: 'control_character' }] });
    }
    for (const holderName of ['', '   ', 'x'.repeat(141), '😀'.repeat(141)]) {
      expectRejected(cardBody({}, { holderName }), 'VALIDATION_FAILED');
    }
  });

  it('treats SQL-ish strings as data or rejects them by charset', () => {
    expectRejected(cardBody({ transactionId: "1'; DROP TABLE transactions;--" }), 'VALIDATION_FAILED');
    expectRejected(cardBody({ processor: "acme' OR '1'='1" }), 'VALIDATION_FAILED');
    expectRejected(cardBody({ metadata: { "k'; DROP TABLE x;--": 'v' } }), 'VALIDATION_FAILED');
    const sql = "Robert'); DROP TABLE students;--";
    expect(validateTransactionRequest(cardBody({ metadata: { note: sql } }), NOW).metadata).toEqual({ note: sql });
  });

  it('refuses prototype-pollution keys anywhere and does not pollute', () => {
    for (const json of [
      `{"__proto__":{"polluted":true},"transactionId":"t1"}`,
      JSON.stringify(cardBody()).replace('"invoice"', '"__proto__"'),
      JSON.stringify(cardBody()).replace('"invoice"', '"constructor"'),
      JSON.stringify(cardBody()).replace('"invoice":"INV-77"', '"prototype":{"x":1}'),
      JSON.stringify(cardBody()).replace('"holderName"', '"__proto__":{"polluted":true},"holderName"'),
    ]) {
      const e = expectRejected(JSON.parse(json), 'VALIDATION_FAILED');
      expect(JSON.stringify(e.details)).toContain('reserved_key');
    }
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });

  it('turns exceptions thrown by hostile objects into PaylogError', () => {
    const trap = new Proxy({}, { ownKeys: () => { throw new Error(`boom ${PAN}`); } });
    expectRejected(trap, 'VALIDATION_FAILED');
    const getter = { ...cardBody() };
    Object.defineProperty(getter, 'processor', { enumerable: true, get: () => { throw new Error(PAN); } });
    expectRejected(getter, 'VALIDATION_FAILED');
  });
});

describe('card numbers smuggled into free text', () => {
  it.each([
    `card ${PAN}`,
    '4111 1111 1111 1111',
    '4111-1111-1111-1111',
    'x378282246310005y',
    '４１１１１１１１１１１１１１１１',
  ])('refuses metadata value %j', (value) => {
    const e = expectRejected(cardBody({ metadata: { note: value } }), 'VALIDATION_FAILED', [PAN, '1111 1111', '378282246310005', value]);
    expect(e.details).toMatchObject({ issues: [{ path: 'metadata.*', code: 'card_number_in_free_text' }] });
  });

  it('refuses a PAN in a metadata key or in the transactionId', () => {
    expectRejected(cardBody({ metadata: { [`n${PAN}`]: 'x' } }), 'VALIDATION_FAILED');
    const e = expectRejected(cardBody({ transactionId: `ord-${PAN}` }), 'VALIDATION_FAILED');
    expect(e.details).toMatchObject({ issues: [{ path: 'transactionId', code: 'card_number_in_free_text' }] });
  });

  // The PAN and IBAN scans skip NFKC for ASCII text that cannot hold a match (issue 20): the
  // verdict must stay the same for grouped, lower-case and full-width (non-ASCII) forms.
  it.each([
    'DE89370400440532013000',
    'iban de89 3704 0044 0532 0130 00 thanks',
    'ＤＥ８９３７０４００４４０５３２０１３０００',
    'pay to GB82WEST12345698765432',
  ])('refuses an IBAN in metadata value %j', (value) => {
    const e = expectRejected(cardBody({ metadata: { note: value } }), 'VALIDATION_FAILED', [value]);
    expect(e.details).toMatchObject({ issues: [{ path: 'metadata.*', code: 'iban_in_free_text' }] });
  });

  it('finds PAN-like numbers written with non-ASCII digits or separators, and nothing in plain ASCII text without 13 digits', () => {
    expect(containsPanLikeNumber('card ４１１１ １１１１ １１１１ １１１１')).toBe(true);
    expect(containsPanLikeNumber('4111\u00a01111\u00a01111\u00a01111')).toBe(true); // NO-BREAK SPACE folds to a space
    expect(containsPanLikeIdentifier('ord-４１１１１１１１１１１１１１１１')).toBe(true);
    for (const text of ['order 411111111111', 'INV-4111-2222', 'DE89 3704']) expect(containsPanLikeNumber(text) || containsPanLikeIdentifier(text)).toBe(false);
  });

  it('allows ordinary numbers', () => {
    for (const note of ['4111111111111112', 'order 123456', '2026-11-29', '+1 415 555 0100', 'INV-0000000000001']) {
      expect(containsPanLikeNumber(note)).toBe(false);
      expect(validateTransactionRequest(cardBody({ metadata: { note } }), NOW).metadata).toEqual({ note });
    }
  });
});

describe('metadata limits', () => {
  it('accepts up to 20 keys and refuses 21', () => {
    const twenty = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, 'v']));
    expect(Object.keys(validateTransactionRequest(cardBody({ metadata: twenty }), NOW).metadata ?? {})).toHaveLength(20);
    const e = expectRejected(cardBody({ metadata: { ...twenty, k20: 'v' } }), 'VALIDATION_FAILED');
    expect(e.details).toMatchObject({ issues: [{ path: 'metadata', code: 'too_many_keys' }] });
  });

  it('bounds key and value length and key charset', () => {
    expect(() => validateTransactionRequest(cardBody({ metadata: { ['k'.repeat(64)]: 'v'.repeat(256) } }), NOW)).not.toThrow();
    for (const metadata of [{ ['k'.repeat(65)]: 'v' }, { k: 'v'.repeat(257) }, { '': 'v' }, { 'a b': 'v' }, { 'ä': 'v' }, { _x: 'v' }, { k: 'line\nbreak' }]) {
      expectRejected(cardBody({ metadata }), 'VALIDATION_FAILED');
    }
    expect(validateTransactionRequest(cardBody({ metadata: undefined }), NOW).metadata).toBeUndefined();
  });

  it('caps the number of reported issues', () => {
    const many = Object.fromEntries(Array.from({ length: 500 }, (_, i) => [`bad key ${i}`, 'v']));
    const e = expectRejected(cardBody({ metadata: many }), 'VALIDATION_FAILED');
    expect((e.details as { issues: unknown[] }).issues.length).toBeLessThanOrEqual(20);
  });
});

describe('valid requests', () => {
  it('returns the parsed request for each payment method type', () => {
    expect(validateTransactionRequest(cardBody(), NOW)).toEqual(cardBody());
    expect(validateTransactionRequest(bankBody(), NOW)).toEqual(bankBody());
    expect(validateTransactionRequest(ibanBody({ bic: 'COBADEFF' }), NOW)).toEqual(ibanBody({ bic: 'COBADEFF' }));
  });

  it('omits optional members given as undefined, so the result canonicalises', () => {
    const req = validateTransactionRequest({ ...ibanBody({ bic: undefined }), metadata: undefined }, NOW);
    expect(Object.keys(req)).not.toContain('metadata');
    expect(Object.keys(req.paymentMethod)).not.toContain('bic');
    expect(() => canonicalJson(req)).not.toThrow();
  });

  it('enforces transactionId and processor formats', () => {
    for (const transactionId of ['a', 'A.b_c:d-e', 'x'.repeat(64)]) {
      expect(validateTransactionRequest(cardBody({ transactionId }), NOW).transactionId).toBe(transactionId);
    }
    for (const transactionId of ['', '-a', '.a', 'a b', 'x'.repeat(65), 'é']) {
      expectRejected(cardBody({ transactionId }), 'VALIDATION_FAILED');
    }
    for (const processor of ['', 'Acme', '-acme', 'a'.repeat(64), 'ac_me']) {
      expectRejected(cardBody({ processor }), 'VALIDATION_FAILED');
    }
  });
});
