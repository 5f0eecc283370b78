/**
 * Tree-size arithmetic of RFC 9162 §2.1: the split point and the bit steps of the verification
 * algorithms (§2.1.3.2, §2.1.4.2), done arithmetically so nothing breaks above 2^31.
 *
 * MUST: accept only safe integers (≤ 2^53 − 1) as sizes and indexes ({@link requireSize}).
 * MUST: be the one definition of the RFC 9162 split point ({@link largestPowerOfTwoBelow});
 *       the tree builder, the proofs and the auditor's bad-entry search import it.
 * MUST NOT: hash, do I/O, or use 32-bit bitwise operators.
 */
import { PaylogError } from '../../errors.js';

export function isSize(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
}

export function lsb(n: number): boolean {
  return n % 2 === 1;
}

export function shr(n: number): number {
  return Math.floor(n / 2);
}

export function isPowerOfTwo(n: number): boolean {
  if (n < 1) return false;
  while (n % 2 === 0) n /= 2;
  return n === 1;
}

/**
 * RFC 9162 §2.1.1 split point: k is the largest power of two smaller than n (requires n > 1).
 * The one definition; the auditor's bad-entry search (src/audit/locate-bad-entry.ts) imports it.
 */
export function largestPowerOfTwoBelow(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

export function requireSize(name: string, n: number): void {
  if (!isSize(n)) {
    throw new PaylogError('BAD_REQUEST', `${name} must be a non-negative safe integer`, { [name]: n });
  }
}
