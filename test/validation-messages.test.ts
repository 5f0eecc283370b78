/**
 * Validation errors say, per field, what was expected (in words), point at the field at fault,
 * keep their stable codes, and never echo input.
 */
import { describe, expect, it } from 'vitest';
import { PaylogError } from '../src/errors.js';
import { validateTransactionRequest } from '../src/validation/transaction.js';
import { FIELD_EXPECTATIONS } from '../src/validation/messages.js';

const NOW = new Date('2026-11-29T12:00:00Z');
const body = (o: Record<string, unknown> = {}, pm: Record<string, unknown> = {}) => ({
  transactionId: 'ord-msg-1',
  processor: 'acme',
  amount: { value: 1999, currency: 'USD' },
  paymentMethod: { type: 'card', pan: '4111111111111111', expiryMonth: 12, expiryYear: 2030, holderName: 'Jane Q Customer', ...pm },
  ...o,
});
function refused(raw: unknown): PaylogError {
  try {
    validateTransactionRequest(raw, NOW);
  } catch (e) {
    if (e instanceof PaylogError) return e;
    throw e;
  }
  throw new Error('accepted');
}
const issues = (e: PaylogError) => (e.details as { issues: Array<{ path: string; code: string; message: string }> }).issues;

describe('validation messages', () => {
  it('a missing field says it is required and what it must be', () => {
    const { processor: _p, ...rest } = body();
    const e = refused(rest);
    expect(e.code).toBe('VALIDATION_FAILED');
    expect(issues(e)).toEqual([{ path: 'processor', code: 'invalid_type', message: `processor is required: ${FIELD_EXPECTATIONS.processor}` }]);
    expect(e.message).toBe(issues(e)[0]!.message);
  });

  it('a fractional amount, a lower-case currency and a 2-digit year say what was expected', () => {
    const amount = refused(body({ amount: { value: 123.45, currency: 'USD' } }));
    expect(issues(amount)[0]).toEqual({
      path: 'amount.value',
      code: 'invalid_type',
      message: 'amount.value must be a positive integer number of minor units, e.g. 1999 for 19.99 USD',
    });
    const currency = refused(body({ amount: { value: 1, currency: 'usd' } }));
    expect(issues(currency)[0]).toMatchObject({ path: 'amount.currency', code: 'invalid_format', message: FIELD_EXPECTATIONS['amount.currency'] });
    const year = refused(body({}, { expiryYear: 29 }));
    expect(issues(year)[0]).toMatchObject({ path: 'paymentMethod.expiryYear', code: 'too_small', message: 'paymentMethod.expiryYear must be the four-digit year, e.g. 2030' });
  });

  it('an expired month of this year points at expiryMonth; a past year at expiryYear', () => {
    const month = refused(body({}, { expiryMonth: 10, expiryYear: 2026 }));
    expect(month.code).toBe('CARD_EXPIRED');
    expect(month.details).toEqual({ path: 'paymentMethod.expiryMonth' });
    expect(month.message).toMatch(/expiryMonth is before the current month/);
    const year = refused(body({}, { expiryMonth: 12, expiryYear: 2025 }));
    expect(year.details).toEqual({ path: 'paymentMethod.expiryYear' });
  });

  it('several problems: the first in the message, each in details with its own words', () => {
    const e = refused(body({ transactionId: '', amount: { value: -1, currency: 'usd' } }));
    expect(issues(e).map((i) => i.path)).toEqual(['transactionId', 'amount.value', 'amount.currency']);
    expect(e.message).toMatch(/^transactionId must be 1-64 characters.*\(and 2 more problems in details\.issues\)$/);
    for (const i of issues(e)) expect(i.message.startsWith(i.path)).toBe(true);
  });

  it('checks after the schema name the field and the rule, codes unchanged', () => {
    expect(refused(body({}, { pan: '4111111111111112' })).message).toMatch(/Luhn/);
    expect(refused(body({ amount: { value: 1, currency: 'XXX' } }))).toMatchObject({ code: 'UNSUPPORTED_CURRENCY', details: { path: 'amount.currency' } });
  });

  it('never echoes input, not even in unknown keys or wrong values', () => {
    const marker = 'ZQXJ-MARKER-7781';
    const hostile = [
      body({ transactionId: `${marker}!` }),
      body({ [marker]: 1 }),
      body({ metadata: { [marker]: '\u0000' } }),
      body({}, { holderName: `${marker}\n`, [marker]: 'x' }),
      body({ processor: marker }),
      body({ amount: { value: marker, currency: marker } }),
    ];
    for (const h of hostile) {
      const e = refused(h);
      expect(JSON.stringify({ m: e.message, d: e.details })).not.toContain(marker);
      expect(JSON.stringify({ m: e.message, d: e.details })).not.toContain('4111111111111111');
      for (const i of issues(e)) expect(i.message.length).toBeGreaterThan(10);
    }
  });
});
