/**
 * Issue 20: src/validation/card-number.ts gives card-validator's verdict (brand and validity)
 * without credit-card-type's per-lookup table clones. Exactly the same answers, compared with
 * `cardValidator.number` itself.
 */
import cardValidator from 'card-validator';
import { describe, expect, it } from 'vitest';
import { cardNumberVerdict } from '../src/validation/card-number.js';

/** Deterministic pseudo-random digits (xorshift), so a failure reproduces. */
function digitsFrom(seed: number): (n: number) => string {
  let x = seed >>> 0 || 1;
  return (n) => {
    let s = '';
    for (let i = 0; i < n; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      s += String((x >>> 0) % 10);
    }
    return s;
  };
}

/** The same number with its last digit set so that Luhn holds. */
function withLuhnDigit(n: string): string {
  for (let d = 0; d < 10; d++) {
    const c = n.slice(0, -1) + d;
    if (luhnOk(c)) return c;
  }
  return n;
}
function luhnOk(n: string): boolean {
  let sum = 0;
  for (let i = 0; i < n.length; i++) {
    let d = n.charCodeAt(n.length - 1 - i) - 48;
    if (i % 2 === 1) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
    sum += d;
  }
  return sum % 10 === 0;
}

function expectSame(n: string): void {
  const theirs = cardValidator.number(n);
  const ours = cardNumberVerdict(n);
  const want = { card: theirs.card ? { type: theirs.card.type, niceType: theirs.card.niceType } : null, isValid: theirs.isValid };
  if (JSON.stringify(ours) !== JSON.stringify(want)) expect({ n, ours }).toEqual({ n, ours: want });
}

describe('cardNumberVerdict equals cardValidator.number on digit strings', () => {
  it('random numbers of every length 0..20, with and without a Luhn check digit', () => {
    const rnd = digitsFrom(20);
    for (let len = 0; len <= 20; len++) {
      for (let i = 0; i < 300; i++) {
        const n = rnd(len);
        expectSame(n);
        if (len > 1) expectSame(withLuhnDigit(n));
      }
    }
  });

  it("every brand pattern's boundaries (just inside and just outside each range), at every length 1..19", () => {
    const rnd = digitsFrom(7);
    const t = cardValidator.creditCardType;
    const prefixes = new Set<string>();
    for (const id of Object.values(t.types)) {
      for (const p of t.getTypeInfo(id).patterns as Array<number | [number, number]>) {
        const [lo, hi] = Array.isArray(p) ? p : [p, p];
        for (const v of [lo - 1, lo, lo + 1, hi - 1, hi, hi + 1]) if (v >= 0) prefixes.add(String(v).padStart(String(lo).length, '0'));
      }
    }
    for (const prefix of prefixes) {
      for (let len = 1; len <= 19; len++) {
        const n = (prefix + rnd(19)).slice(0, len);
        expectSame(n);
        if (len > 1) expectSame(withLuhnDigit(n));
      }
    }
  });

  it('the test cards of the fixtures and the bench agree', () => {
    for (const n of ['4111111111111111', '5555555555554444', '378282246310005', '6011111111111117', '3530111333300000', '6200000000000005', '4000000000000002', '2223003122003222', '36227206271667', '6759649826438453']) expectSame(n);
  });
});
