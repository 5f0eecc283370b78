/**
 * The card-number verdict of card-validator (`cardValidator.number(value)`: one brand, its
 * lengths, Luhn), for strings of ASCII digits, without credit-card-type's per-call deep copies:
 * its lookup clones (a JSON round trip) every brand table a number matches, on every call.
 * Here the tables are read ONCE, through credit-card-type's public API as card-validator
 * re-exports it, and the same matching rules are applied to them.
 *
 * Contracts:
 * - For every string of ASCII digits, {@link cardNumberVerdict} gives the same `isValid` and
 *   the same brand (`type`, `niceType`) as `cardValidator.number` with default options
 *   (test/card-number.test.ts compares them over every brand's pattern boundaries and random
 *   numbers of every length 0..20); anything else is refused here (null brand, invalid).
 * - Pure: keeps nothing of the numbers it is given.
 */
import cardValidator from 'card-validator';

type Pattern = number | [number, number];
/** A brand pattern with its decimal forms computed once (credit-card-type converts them per call). */
interface CompiledPattern {
  /** Digits of the pattern, or of a range's lower end: the match's strength when the number is as long. */
  readonly width: number;
  readonly min: number;
  /** parseInt of the upper end's first `width` digits (credit-card-type compares on those). */
  readonly maxHead: number;
  readonly minText: string;
  readonly maxText: string;
  readonly range: boolean;
}
interface BrandTable {
  readonly type: string;
  readonly niceType: string;
  readonly patterns: readonly CompiledPattern[];
  readonly lengths: readonly number[];
}

interface CardNumberVerdict {
  /** The one brand the number belongs to (credit-card-type id and display name), or null. */
  card: { type: string; niceType: string } | null;
  /** One brand, one of its lengths, and Luhn (UnionPay: no Luhn, as card-validator). */
  isValid: boolean;
}

const creditCardType = cardValidator.creditCardType;

function compile(p: Pattern): CompiledPattern {
  const [min, max] = Array.isArray(p) ? p : [p, p];
  const width = String(min).length;
  return Object.freeze({ width, min, maxHead: parseInt(String(max).substr(0, width), 10), minText: String(min), maxText: String(max), range: Array.isArray(p) });
}

/** Brand tables in credit-card-type's test order (its default order; paylog never changes it). */
const BRANDS: readonly BrandTable[] = Object.freeze(
  Object.values(creditCardType.types).map((id) => {
    const t = creditCardType.getTypeInfo(id);
    return Object.freeze({ type: t.type, niceType: t.niceType, patterns: Object.freeze((t.patterns as Pattern[]).map(compile)), lengths: t.lengths });
  }),
);
/** Digits of the longest pattern (or range end): a number at least this long is matched on its first digits only. */
const MAX_PATTERN_WIDTH = Math.max(...BRANDS.flatMap((b) => b.patterns.map((p) => Math.max(p.width, p.maxText.length))));

/**
 * BRANDS with, per first digit d of the number, only the patterns that can match a number that
 * long starting with d (every pattern's bounds are as wide as the pattern, first digit non-zero,
 * so a match needs firstDigit(min) ≤ d ≤ firstDigit(max)); brand and pattern order unchanged, so
 * `candidates` finds the same first match per brand without trying the other ~150 patterns.
 */
const BRANDS_BY_FIRST_DIGIT: readonly (readonly BrandTable[])[] = Array.from({ length: 10 }, (_, d) =>
  BRANDS.map((b) => ({ ...b, patterns: b.patterns.filter((p) => Number(p.minText[0]) <= d && d <= Number(p.maxText[0])) })).filter((b) => b.patterns.length > 0),
);
const UNIONPAY = creditCardType.types.UNIONPAY;
const DIGITS = /^\d*$/;

// credit-card-type lib/matches.js: a prefix range, compared on the digits the number has.
// `head` = parseInt of the number's first `width` digits (computed once per width per call).
function matchesRange(n: string, p: CompiledPattern, head: number): boolean {
  if (n.length >= p.width) return head >= p.min && head <= p.maxHead;
  const lo = parseInt(p.minText.substr(0, n.length), 10);
  const hi = parseInt(p.maxText.substr(0, n.length), 10);
  return head >= lo && head <= hi;
}
function matchesPattern(n: string, p: CompiledPattern): boolean {
  return p.minText.substring(0, n.length) === n.substring(0, p.width);
}

/** credit-card-type's lookup for a non-empty number: the best match if it is certain, else every candidate. */
function candidates(n: string): Array<{ brand: BrandTable; strength: number | undefined }> {
  const results: Array<{ brand: BrandTable; strength: number | undefined }> = [];
  const heads: number[] = [];
  const table = n.length >= MAX_PATTERN_WIDTH ? BRANDS_BY_FIRST_DIGIT[n.charCodeAt(0) - 48]! : BRANDS;
  for (const brand of table) {
    for (const pattern of brand.patterns) {
      if (pattern.range) {
        const head = (heads[pattern.width] ??= parseInt(n.substr(0, pattern.width), 10));
        if (!matchesRange(n, pattern, head)) continue;
      } else if (!matchesPattern(n, pattern)) continue;
      results.push({ brand, strength: n.length >= pattern.width ? pattern.width : undefined });
      break;
    }
  }
  // lib/find-best-match.js: only when every candidate has a strength, the strongest (first on ties).
  if (results.length === 0 || results.some((r) => !r.strength)) return results;
  return [results.reduce((best, r) => (Number(best.strength) < Number(r.strength) ? r : best))];
}

/** card-validator's Luhn (mod 10) check. */
function luhn(n: string): boolean {
  let sum = 0;
  let alt = false;
  for (let i = n.length - 1; i >= 0; i--) {
    let d = n.charCodeAt(i) - 48;
    if (alt) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    alt = !alt;
    sum += d;
  }
  return sum % 10 === 0;
}

/** `cardValidator.number(digits)`'s brand and validity (module contract). */
export function cardNumberVerdict(digits: string): CardNumberVerdict {
  if (typeof digits !== 'string' || !DIGITS.test(digits) || digits.length === 0) return { card: null, isValid: false };
  const found = candidates(digits);
  if (found.length !== 1) return { card: null, isValid: false };
  const brand = found[0]!.brand;
  const card = { type: brand.type, niceType: brand.niceType };
  const checksum = brand.type === UNIONPAY || luhn(digits);
  return { card, isValid: checksum && brand.lengths.includes(digits.length) };
}
