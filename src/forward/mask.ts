/**
 * Masking of a forward's answer (issue 18): what the destination sends back reaches the checkout
 * only after every card-number-like value and every exact value paylog substituted (CVC, account
 * number, IBAN, ...) is masked, in the body (also when compressed or JSON-escaped) and in the
 * headers passed on.
 *
 * Contract (pure, no I/O):
 * - Card-number-like = the one PAN detector (src/validation/identifiers.ts); a PAN keeps only its
 *   last four digits (what paylog serves everywhere, src/validation/masking.ts).
 * - JSON `\uXXXX` escapes of letters, digits, space, `.` and `-` are unescaped before scanning
 *   (they mean the same JSON), so an escaped PAN is found like a plain one.
 * - The result MUST hold no PAN-like value: if one survives the located masking, the text is
 *   NFKC-folded and masked again; if one still survives, DESTINATION_RESPONSE_UNREADABLE.
 * - A body whose content coding cannot be undone within the size limit is refused
 *   (DESTINATION_RESPONSE_UNREADABLE), never passed on unread.
 */
import { brotliDecompressSync, gunzipSync, inflateSync, inflateRawSync } from 'node:zlib';
import { PaylogError } from '../errors.js';
import { containsPanLikeNumber, panLikeRanges } from '../validation/identifiers.js';
import { LAST_DIGITS, MASK_CHAR } from '../validation/masking.js';

/** Exact values shorter than this are not masked on their own (they would match everywhere). */
const MIN_EXACT_VALUE_CHARS = 3;

function unreadable(why: string): PaylogError {
  return new PaylogError('DESTINATION_RESPONSE_UNREADABLE', `the destination's answer could not be inspected (${why}); nothing of it was passed on`);
}

/** Undoes `content-encoding` (gzip, deflate, br, in any sequence), output bounded by `maxBytes`. */
export function decodeContent(body: Buffer, contentEncoding: string | undefined, maxBytes: number): Buffer {
  const codings = (contentEncoding ?? '')
    .split(',')
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== '' && c !== 'identity');
  let out = body;
  for (const coding of codings.reverse()) {
    try {
      if (coding === 'gzip' || coding === 'x-gzip') out = gunzipSync(out, { maxOutputLength: maxBytes });
      else if (coding === 'br') out = brotliDecompressSync(out, { maxOutputLength: maxBytes });
      else if (coding === 'deflate') {
        try {
          out = inflateSync(out, { maxOutputLength: maxBytes });
        } catch {
          out = inflateRawSync(out, { maxOutputLength: maxBytes }); // servers that send raw deflate
        }
      } else throw unreadable(`content coding ${coding.slice(0, 20)}`);
    } catch (e) {
      if (e instanceof PaylogError) throw e;
      throw unreadable(`${coding} body could not be decompressed within ${maxBytes} bytes`);
    }
  }
  return out;
}

const JSON_ESCAPED_PLAIN = /\\u([0-9A-Fa-f]{4})/g;
/** Unescapes `\uXXXX` of letters, digits (any script), space, `.`, `-`. */
function unescapePlain(text: string): string {
  return text.replace(JSON_ESCAPED_PLAIN, (all, hex: string) => {
    const c = String.fromCharCode(parseInt(hex, 16));
    return /^[\p{L}\p{Nd} .-]$/u.test(c) ? c : all;
  });
}

/** A PAN-like run with every digit but the last four replaced. */
function maskRun(run: string): string {
  let keep = LAST_DIGITS;
  const chars = [...run];
  for (let i = chars.length - 1; i >= 0; i--) {
    if (!/\p{Nd}/u.test(chars[i]!)) continue;
    if (keep > 0) keep--;
    else chars[i] = MASK_CHAR;
  }
  return chars.join('');
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Grouped spellings of an exact value (an IBAN is often printed in groups of four). */
function spellings(value: string): string[] {
  const out = [value];
  if (value.length > 8 && /^[A-Za-z0-9]+$/.test(value)) out.push(value.replace(/(.{4})(?=.)/g, '$1 '));
  return out;
}

function maskPanLike(text: string): { text: string; count: number } {
  const ranges = panLikeRanges(text);
  if (ranges.length === 0) return { text, count: 0 };
  let out = '';
  let last = 0;
  for (const [s, e] of ranges) {
    out += text.slice(last, s) + maskRun(text.slice(s, e));
    last = e;
  }
  return { text: out + text.slice(last), count: ranges.length };
}

/**
 * Masks `text`: every exact value of `exact` (whole-token occurrences, case-insensitive), then
 * every PAN-like run. Returns the text and how many values were masked.
 */
export function maskText(text: string, exact: readonly string[]): { text: string; masked: number } {
  let out = unescapePlain(text);
  let masked = 0;
  for (const value of exact) {
    if (value.length < MIN_EXACT_VALUE_CHARS) continue;
    for (const spelling of spellings(value)) {
      const re = new RegExp(`(?<![\\p{L}\\p{N}])${escapeRegExp(spelling)}(?![\\p{L}\\p{N}])`, 'giu');
      out = out.replace(re, (m) => {
        masked++;
        return MASK_CHAR.repeat(m.length);
      });
    }
  }
  let pans = maskPanLike(out);
  if (containsPanLikeNumber(pans.text)) pans = maskPanLike(pans.text.normalize('NFKC'));
  if (containsPanLikeNumber(pans.text)) throw unreadable('a card-number-like value could not be located');
  return { text: pans.text, masked: masked + pans.count };
}

/** Response headers passed on to the caller (values masked too). */
const PASSED_RESPONSE_HEADERS = ['content-type', 'content-language', 'date', 'etag', 'last-modified', 'location', 'retry-after', 'request-id', 'x-request-id', 'idempotency-key'] as const;

/**
 * A forward's answer as the caller gets it: the body decoded (output bounded by `maxBytes`) and
 * masked, the passed headers masked; `count` is the number of masked values in both.
 */
export function maskAnswer(raw: Buffer, headers: Record<string, string | string[] | undefined>, exact: string[], maxBytes: number): { body: string; headers: Record<string, string>; count: number } {
  const first = (v: string | string[] | undefined) => (Array.isArray(v) ? v.join(', ') : v);
  const decoded = decodeContent(raw, first(headers['content-encoding']), maxBytes);
  const body = maskText(decoded.toString('utf8'), exact);
  let count = body.masked;
  const out: Record<string, string> = {};
  for (const name of PASSED_RESPONSE_HEADERS) {
    const v = first(headers[name]);
    if (v === undefined) continue;
    const m = maskText(v, exact);
    count += m.masked;
    out[name] = m.text;
  }
  return { body: body.text, headers: out, count };
}
