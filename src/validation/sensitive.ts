/**
 * Detector for sensitive authentication data (SAD) in request KEYS.
 *
 * PCI DSS v4.0.1 Req. 3.3.1: SAD (card verification code, full track data, PIN / PIN block)
 * must not be stored after authorisation, and paylog never needs it at all. A request that
 * carries a key that looks like SAD — at any depth, whatever its value — is refused before
 * anything else looks at it, so the value is never validated, logged or echoed.
 *
 * Matching is case-, separator- and compatibility-form-insensitive. A key is split into words
 * (after Unicode NFKC; boundaries at camelCase humps and at every character that is not a
 * letter or digit, which also covers `_`, `-`, `.`, spaces and zero-width characters), then:
 * 1. the words joined (`card_Security-Code` → `cardsecuritycode`) equal a known SAD name, or
 * 2. the joined form contains an unambiguous SAD name (`cvv`, `cvc`, `securitycode`, ...), or
 * 3. one word is a short SAD name (`pin`, `cid`, `csc`, `track`, ...): `card_pin` matches,
 *    `shipping` or `trackingNumber` do not.
 * This errs on the side of refusing: a merchant key such as `track_id` is refused too.
 */

/** Joined forms that are SAD names in full. */
const SAD_EXACT = new Set([
  'cvv', 'cvc', 'cvv2', 'cvc2', 'cid', 'csc', 'cvn', 'cvd', 'cav2', 'cvp2',
  'securitycode', 'cardsecuritycode', 'cardverificationvalue', 'cardverificationcode',
  'track', 'track1', 'track2', 'trackdata', 'track1data', 'track2data',
  'magstripe', 'magstripedata', 'magneticstripe', 'magneticstripedata',
  'pin', 'pinblock', 'pincode', 'pinnumber',
]);

/** Names distinctive enough to match anywhere inside the joined form. */
const SAD_SUBSTRINGS = [
  'cvv', 'cvc', 'securitycode', 'cardverification', 'trackdata', 'magstripe',
  'magneticstripe', 'pinblock',
] as const;

/** Short names that match only as a whole word. */
const SAD_WORDS = new Set([
  'cvv2', 'cvc2', 'cid', 'csc', 'cvn', 'cvd', 'cav2', 'cvp2', 'pin', 'track', 'track1', 'track2',
]);

/** Splits a key into lower-case words (see module doc). */
function keyWords(key: string): string[] {
  return key
    .normalize('NFKC')
    .replace(/(\p{Ll}|\p{N})(\p{Lu})/gu, '$1 $2')
    .replace(/(\p{Lu}+)(\p{Lu}\p{Ll})/gu, '$1 $2')
    .split(/[^\p{L}\p{N}]+/u)
    .filter((w) => w.length > 0)
    .map((w) => w.toLowerCase());
}

/**
 * Verdicts of {@link classifySensitiveKey} for recently seen short keys: a request's keys are
 * nearly always the same few names, and the verdict is a pure function of the key. Bounded (the
 * map is cleared when full) and only for keys up to {@link MEMO_MAX_KEY_LENGTH} characters, so
 * attacker-chosen keys cannot grow it; values are never seen here, only keys.
 */
const verdicts = new Map<string, string | null>();
const MEMO_MAX_ENTRIES = 1024;
const MEMO_MAX_KEY_LENGTH = 64;

/**
 * The SAD name a key matches (one of our own constant strings, safe to report), or null.
 */
export function classifySensitiveKey(key: string): string | null {
  if (key.length > MEMO_MAX_KEY_LENGTH) return classifyWords(key);
  const known = verdicts.get(key);
  if (known !== undefined) return known;
  const verdict = classifyWords(key);
  if (verdicts.size >= MEMO_MAX_ENTRIES) verdicts.clear();
  verdicts.set(key, verdict);
  return verdict;
}

function classifyWords(key: string): string | null {
  const words = keyWords(key);
  const joined = words.join('');
  if (SAD_EXACT.has(joined)) return joined;
  for (const s of SAD_SUBSTRINGS) if (joined.includes(s)) return s;
  for (const w of words) if (SAD_WORDS.has(w)) return w;
  return null;
}

export interface SensitiveKeyMatch {
  /** Path of the offending key, raw (attacker-chosen segments: sanitise before reporting). */
  path: Array<string | number>;
  /** The SAD name that matched (from our constant lists). */
  term: string;
}

interface PathNode {
  parent: PathNode | null;
  segment: string | number;
}

function pathOf(node: PathNode | null): Array<string | number> {
  const out: Array<string | number> = [];
  for (let n = node; n !== null; n = n.parent) out.push(n.segment);
  return out.reverse();
}

/**
 * One depth-first walk over every own enumerable key of `value` (objects and arrays), asking
 * two questions at once: the first key for which `primary` returns a term (the walk stops
 * there), and, when there is none, the first key for which `secondary` does. Both answers are
 * exactly those of two separate walks (same order, same path), so a caller whose checks run in
 * that order gets the same verdict from one pass over the body. Iterative with parent links
 * (linear time and memory however deep the nesting; no stack overflow); objects reachable twice
 * (cycles) are visited once.
 */
export function findKeysDeep(
  value: unknown,
  primary: (key: string) => string | null,
  secondary: (key: string) => string | null = () => null,
): { primary: SensitiveKeyMatch | null; secondary: SensitiveKeyMatch | null } {
  const stack: Array<{ node: unknown; at: PathNode | null }> = [{ node: value, at: null }];
  const seen = new Set<object>();
  let second: SensitiveKeyMatch | null = null;
  while (stack.length > 0) {
    const { node, at } = stack.pop()!;
    if (node === null || typeof node !== 'object' || seen.has(node)) continue;
    seen.add(node);
    if (Array.isArray(node)) {
      for (let i = node.length - 1; i >= 0; i--) {
        stack.push({ node: node[i] as unknown, at: { parent: at, segment: i } });
      }
      continue;
    }
    const keys = Object.keys(node);
    for (const key of keys) {
      const term = primary(key);
      if (term !== null) return { primary: { path: pathOf({ parent: at, segment: key }), term }, secondary: null };
      if (second === null) {
        const other = secondary(key);
        if (other !== null) second = { path: pathOf({ parent: at, segment: key }), term: other };
      }
    }
    for (let i = keys.length - 1; i >= 0; i--) {
      const key = keys[i]!;
      stack.push({
        node: (node as Record<string, unknown>)[key],
        at: { parent: at, segment: key },
      });
    }
  }
  return { primary: null, secondary: second };
}

/** First key, at any depth, that looks like sensitive authentication data (module doc). */
export function findSensitiveAuthenticationData(value: unknown): SensitiveKeyMatch | null {
  return findKeysDeep(value, classifySensitiveKey).primary;
}
