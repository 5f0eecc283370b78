/**
 * Searches for a short secret (a CVC) that must never be written: the secret counts as present
 * when it is a token of its own.
 *
 * Tokens are split at every character other than letters, digits, '.' and '-', so a request id (UUID),
 * a certificate fingerprint (hex) or a response time that happens to contain the same four digits is one
 * longer token and not a false alarm. A leak such as `"cvc":"8315"`, `cvc=8315` or `code 8315` is found.
 */
import { decodeCbor, type CborValue } from '../../src/log/leaf.js';

/** True when `secret` is a token of its own in `text` (a response body, a row dumped as JSON). */
export function hasToken(text: string, secret: string): boolean {
  return text.split(/[^0-9A-Za-z.-]+/).includes(secret);
}

export function logLinesWithToken(lines: readonly string[], secret: string): string[] {
  return lines.filter((line) => hasToken(line, secret));
}

/** Every text of a decoded CBOR value: map keys, text strings, byte strings read as latin1, and integers in decimal. */
function textsOf(v: CborValue, out: string[]): string[] {
  if (typeof v === 'string') out.push(v);
  else if (typeof v === 'number' || typeof v === 'bigint') out.push(String(v));
  else if (Buffer.isBuffer(v)) out.push(v.toString('latin1'));
  else if (Array.isArray(v)) for (const x of v) textsOf(x, out);
  else if (v !== null && typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) {
      out.push(k);
      textsOf(x, out);
    }
  }
  return out;
}

/**
 * The indexes of the leaves (CBOR) in which `secret` is a token of a text (a map key, a text
 * string, a byte string read as latin1, or an integer in decimal), searched value by value after decoding.
 *
 * Why not `leaf.includes(secret)`: leaves hold random hex text (transaction ids `ord-<12 hex>`,
 * `demo-<16 hex>`, the UUIDs in KMS key ARNs), so four given digits occur inside one of them by
 * chance (about 1 in 65,536 per position, ~1e-3 per log of a test file); decoded, such an
 * occurrence is part of a longer token. Searching the raw bytes as latin1 would also miss a CVC
 * stored as its own text: CBOR puts the header byte 0x64 ('d') right before a 4-byte string.
 */
export function leavesWithToken(leaves: readonly Uint8Array[], secret: string): number[] {
  const hits: number[] = [];
  leaves.forEach((leaf, i) => {
    if (textsOf(decodeCbor(leaf), []).some((text) => hasToken(text, secret))) hits.push(i);
  });
  return hits;
}
