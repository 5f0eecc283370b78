/**
 * The one place for paylog's identifier patterns and its primary-account-number (PAN)
 * detector. Validation (`./transaction.ts`), the services, the PKI identity rules, the
 * auditor's verifier (`src/audit/`) and the OpenAPI document (`src/api/openapi.ts`)
 * import these; none of them writes its own copy (SECURITY.md: "the same rules").
 *
 * Dependency-free on purpose: the auditor's verifier imports it and must stay small and fast.
 */

// ---------------------------------------------------------------------------------------------
// Transaction ids (contract v1: `transactionId`, the idempotency key)

/** Longest transaction id, in characters (all ASCII, so also bytes). */
export const TRANSACTION_ID_MAX = 64;
/** ASCII letter or digit first, then letters, digits, `.`, `_`, `:`, `-`; 1..TRANSACTION_ID_MAX. */
export const TRANSACTION_ID_PATTERN = new RegExp(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,${TRANSACTION_ID_MAX - 1}}$`);

/** True when `v` is a transaction id that submission accepts (so one that can exist). */
export function isTransactionId(v: unknown): v is string {
  return typeof v === 'string' && TRANSACTION_ID_PATTERN.test(v);
}

// ---------------------------------------------------------------------------------------------
// Principal and processor names (certificate SAN `urn:paylog:principal:<role>:<name>`)

/** Longest principal name (a DNS label's 63 characters). */
const PRINCIPAL_NAME_MAX = 63;
/** Lower-case ASCII letter or digit first, then letters, digits and `-`; 1..PRINCIPAL_NAME_MAX. */
export const PRINCIPAL_NAME_PATTERN = new RegExp(`^[a-z0-9][a-z0-9-]{0,${PRINCIPAL_NAME_MAX - 1}}$`);
/** A processor's name is its principal name (its certificate names it). */
export const PROCESSOR_NAME_PATTERN = PRINCIPAL_NAME_PATTERN;

/**
 * A key epoch's id: `<processor>/<period>`, the period as `YYYY-MM`, `YYYY-MM-DD` or
 * `YYYY-MM-DDTHH` (PAYLOG_KEY_EPOCH month | day | hour), e.g. `acme/2026-12`.
 */
/** Key epoch id `<processor>/<period>[/<generation>]` (issue 9: a rotation adds generation n+1). */
export const EPOCH_ID_PATTERN = new RegExp(
  `^${PRINCIPAL_NAME_PATTERN.source.slice(1, -1)}/\\d{4}-\\d{2}(?:-\\d{2}(?:T\\d{2})?)?(?:/\\d{1,6})?$`,
);

/**
 * True when `v` may name a processor: the pattern, and no PAN-like digit run
 * ({@link containsPanLikeIdentifier}) — the name is stored, logged, put in log leaves and in the
 * KMS encryption context in the clear.
 */
export function isProcessorName(v: unknown): v is string {
  return typeof v === 'string' && PROCESSOR_NAME_PATTERN.test(v) && !containsPanLikeIdentifier(v);
}

/** `PATTERN.source` without the `^…$` anchors, for composing (e.g. the SAN URI pattern). */
export function unanchored(pattern: RegExp): string {
  return pattern.source.replace(/^\^/, '').replace(/\$$/, '');
}

// ---------------------------------------------------------------------------------------------
// PAN detection (PCI DSS v4.0.1 3.3/3.4: no PAN in clear-text fields or in log leaves)

/** PAN length range (ISO/IEC 7812-1): 13 to 19 digits. */
export const PAN_MIN_DIGITS = 13;
export const PAN_MAX_DIGITS = 19;

/** ISO/IEC 7812-1 Annex B: Luhn mod-10 check over an ASCII digit string (false if empty). */
export function luhnValid(digits: string): boolean {
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = digits.charCodeAt(digits.length - 1 - i) - 48;
    if (d < 0 || d > 9) return false;
    if (i % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return digits.length > 0 && sum % 10 === 0;
}

/** Separators bridged inside a free-text digit run (PANs are written grouped: `4111 1111-…`). */
const GROUP_SEPARATORS = /[ .-]/g;
/** Maximal digit runs with at most one separator between two digits (after NFKC). */
const GROUPED_DIGIT_RUN = /\d(?:[ .-]?\d)*/g;
/** Maximal contiguous digit runs (after NFKC). */
const CONTIGUOUS_DIGIT_RUN = /\d+/g;

function isPanLength(n: number): boolean {
  return n >= PAN_MIN_DIGITS && n <= PAN_MAX_DIGITS;
}

/**
 * Free-text rule: true when `text`, after Unicode NFKC folding (full-width and other
 * compatibility digits become ASCII), holds a maximal run of 13–19 digits — single space, `.`
 * or `-` allowed between digits — that passes Luhn.
 */
export function containsPanLikeNumber(text: string): boolean {
  if (!mayHoldPan(text)) return false; // the same verdict without NFKC and the run scan
  for (const m of text.normalize('NFKC').matchAll(GROUPED_DIGIT_RUN)) {
    const digits = m[0].replace(GROUP_SEPARATORS, '');
    if (isPanLength(digits.length) && luhnValid(digits)) return true;
  }
  return false;
}

/** Like GROUPED_DIGIT_RUN over the text as written: any decimal digit (NFKC folds each to ASCII). */
const GROUPED_UNICODE_DIGIT_RUN = /\p{Nd}(?:[ .-]?\p{Nd})*/gu;

/**
 * The free-text rule of {@link containsPanLikeNumber}, located: the [start, end) ranges (UTF-16
 * offsets into `text` as written) of each maximal digit run that is PAN-like. For masking
 * (forward responses); a caller MUST still check its result with containsPanLikeNumber.
 */
export function panLikeRanges(text: string): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const m of text.matchAll(GROUPED_UNICODE_DIGIT_RUN)) {
    const digits = m[0].normalize('NFKC').replace(GROUP_SEPARATORS, '');
    if (isPanLength(digits.length) && luhnValid(digits)) out.push([m.index, m.index + m[0].length]);
  }
  return out;
}

/**
 * Identifier rule: true when `text`, after NFKC, holds 13–19 CONTIGUOUS digits passing Luhn.
 * Separators are not bridged: a UUID or grouped hex id would otherwise look like a PAN often
 * enough (≈0.5% of random UUIDs) to refuse valid ids.
 */
export function containsPanLikeIdentifier(text: string): boolean {
  if (!mayHoldPan(text)) return false; // the same verdict without NFKC and the run scan
  for (const m of text.normalize('NFKC').matchAll(CONTIGUOUS_DIGIT_RUN)) {
    if (isPanLength(m[0].length) && luhnValid(m[0])) return true;
  }
  return false;
}

const THIRTEEN_GROUPED_DIGITS = /\d(?:[ .-]?\d){12}/;
const NON_ASCII = /[^\x00-\x7f]/;

/**
 * Cheap necessary condition for either rule: 13 ASCII digits with single grouping separators,
 * or any non-ASCII character (which NFKC may fold into a digit or a separator). Text for which
 * this is false holds no PAN by either rule. Works on UTF-16 strings and on latin1-decoded
 * UTF-8 bytes alike (every byte of a non-ASCII character is ≥ 0x80). Two regexes, not one
 * alternation: V8 scans each faster alone (auditor_rebuild bench).
 */
export function mayHoldPan(text: string): boolean {
  return THIRTEEN_GROUPED_DIGITS.test(text) || NON_ASCII.test(text);
}
