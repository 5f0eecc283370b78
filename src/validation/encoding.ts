/**
 * Text that PostgreSQL would refuse, refused before anything else looks at a request.
 *
 * PostgreSQL `text`/`jsonb` (server encoding UTF8) cannot hold U+0000 and rejects byte
 * sequences that are not UTF-8 (SQLSTATE 22021 / 22P05); a UTF-16 lone surrogate has no UTF-8
 * form at all (RFC 3629 §3), so the driver would send U+FFFD or fail. Such input reaching a
 * query used to be a 500. The server (`src/api/server.ts`) applies these checks once, to every
 * route: the raw URL (path and query) in `onRequest`, JSON body bytes in the body parser, and the
 * parsed body, params and query in `preValidation`; each failure is INVALID_ENCODING (400).
 *
 * Rules (one definition, used by all three):
 * - bytes must be well-formed UTF-8 (RFC 3629; overlong forms and encoded surrogates are not);
 * - a string must not contain U+0000 or a lone surrogate (U+D800–U+DFFF not in a pair) — in
 *   JSON these arrive as `\u0000` / `\ud800` escapes, in keys as well as values.
 * Messages never include the offending input.
 */
import { PaylogError } from '../errors.js';

const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true });
/** U+0000, or a lone surrogate (in `u` mode a paired surrogate is one astral code point). */
const UNSTORABLE_CHAR = /[\u0000\p{Cs}]/u;

function invalidEncoding(where: string): PaylogError {
  return new PaylogError('INVALID_ENCODING', `${where} must be UTF-8 text without NUL characters or lone surrogates`, { where });
}

/** RFC 3629 strict decoding; throws INVALID_ENCODING naming `where` (e.g. "request body"). */
export function decodeUtf8Strict(bytes: Uint8Array, where: string): string {
  try {
    return STRICT_UTF8.decode(bytes);
  } catch {
    throw invalidEncoding(where);
  }
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 65 && c <= 70) return c - 55;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

/**
 * RFC 3986 §2.1 percent-decoding of a request target to bytes: `%HH` becomes the byte HH; a `%`
 * not followed by two hex digits stays literal; other characters are taken as the byte the HTTP
 * parser read (Node hands non-ASCII request-target bytes over as latin1).
 */
export function percentDecodeToBytes(target: string): Uint8Array {
  const out = new Uint8Array(target.length);
  let n = 0;
  for (let i = 0; i < target.length; i++) {
    const c = target.charCodeAt(i);
    if (c === 37 /* % */ && i + 2 < target.length) {
      const hi = hexValue(target.charCodeAt(i + 1));
      const lo = hexValue(target.charCodeAt(i + 2));
      if (hi >= 0 && lo >= 0) {
        out[n++] = (hi << 4) | lo;
        i += 2;
        continue;
      }
    }
    out[n++] = c & 0xff;
  }
  return out.subarray(0, n);
}

/**
 * Throws INVALID_ENCODING unless the request target (path and query, as received), once
 * percent-decoded, is UTF-8 without NUL. Path parameters and query values are all derived from
 * it, so this covers every route's parameters before routing code sees them.
 */
export function assertStorableRequestTarget(target: string): void {
  // Fast path: plain ASCII without escapes cannot hold anything we refuse (NUL is not a legal
  // request-target byte and the HTTP parser refuses it).
  if (!/[%\u0080-\uffff]/.test(target)) return;
  const bytes = percentDecodeToBytes(target);
  if (bytes.includes(0)) throw invalidEncoding('request URL');
  decodeUtf8Strict(bytes, 'request URL');
}

/**
 * Throws INVALID_ENCODING if any string in `value` — object keys and values, array items, at
 * any depth — holds U+0000 or a lone surrogate. Iterative (no recursion limit however deep the
 * nesting); every node is visited once (cycles, if any, are not followed twice).
 */
export function assertStorableStrings(value: unknown, where: string): void {
  const stack: unknown[] = [value];
  const seen = new Set<object>();
  while (stack.length > 0) {
    const node = stack.pop();
    if (typeof node === 'string') {
      if (UNSTORABLE_CHAR.test(node)) throw invalidEncoding(where);
      continue;
    }
    if (node === null || typeof node !== 'object' || seen.has(node)) continue;
    seen.add(node);
    if (Array.isArray(node)) {
      for (const item of node) stack.push(item);
      continue;
    }
    if (Buffer.isBuffer(node)) continue;
    for (const key of Object.keys(node)) {
      if (UNSTORABLE_CHAR.test(key)) throw invalidEncoding(where);
      stack.push((node as Record<string, unknown>)[key]);
    }
  }
}
