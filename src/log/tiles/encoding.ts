/**
 * C2SP tlog-tiles byte formats. Pure.
 * - §Merkle Tree: a tile is its hashes concatenated (32 bytes each, a full tile 8,192 bytes).
 * - §Log entries: an entry bundle is a sequence of big-endian uint16 length-prefixed entries
 *   (here: the exact leaf bytes, whose RFC 9162 leaf hash is the level-0 tile hash).
 */
import { PaylogError } from '../../errors.js';
import { HASH_SIZE } from '../merkle.js';

/** §Log entries: entries are uint16 length-prefixed, so at most 65,535 bytes each. */
export const MAX_BUNDLE_ENTRY_BYTES = 0xffff;

/** §Merkle Tree: concatenated hashes. */
export function encodeHashTile(hashes: readonly Uint8Array[]): Buffer {
  for (const h of hashes) if (h.length !== HASH_SIZE) throw new PaylogError('BAD_REQUEST', 'tile hashes must be 32 bytes');
  return Buffer.concat(hashes);
}

/** Splits a tile into its hashes; throws INTEGRITY_FAILURE unless it is exactly `width` hashes. */
export function decodeHashTile(bytes: Uint8Array, width: number): Buffer[] {
  if (bytes.length !== width * HASH_SIZE) {
    throw new PaylogError('INTEGRITY_FAILURE', `tile is ${bytes.length} bytes, expected ${width * HASH_SIZE} for width ${width}`);
  }
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: Buffer[] = [];
  for (let i = 0; i < width; i++) out.push(b.subarray(i * HASH_SIZE, (i + 1) * HASH_SIZE));
  return out;
}

/** §Log entries: big-endian uint16 length || entry, for each entry. */
export function encodeEntryBundle(entries: readonly Uint8Array[]): Buffer {
  let total = 0;
  for (const e of entries) {
    if (e.length > MAX_BUNDLE_ENTRY_BYTES) throw new PaylogError('BAD_REQUEST', 'entry too large for a tlog-tiles bundle', { max: MAX_BUNDLE_ENTRY_BYTES });
    total += 2 + e.length;
  }
  const out = Buffer.allocUnsafe(total);
  let pos = 0;
  for (const e of entries) {
    out.writeUInt16BE(e.length, pos);
    out.set(e, pos + 2);
    pos += 2 + e.length;
  }
  return out;
}

/**
 * Parses an entry bundle into its entries (any count; the caller compares with the width it
 * expected). Throws INTEGRITY_FAILURE on a truncated length prefix or entry.
 */
export function decodeEntryBundle(bytes: Uint8Array): Buffer[] {
  return entryBundleViews(bytes).map((e) => Buffer.from(e.buffer, e.byteOffset, e.byteLength));
}

/**
 * {@link decodeEntryBundle} as plain byte views of `bytes` (the auditor's hot path: a
 * `Uint8Array` view costs about a third of a Buffer's). Same rules, same errors.
 */
export function entryBundleViews(bytes: Uint8Array): Uint8Array[] {
  const ab = bytes.buffer;
  const base = bytes.byteOffset;
  const n = bytes.byteLength;
  const out: Uint8Array[] = [];
  let pos = 0;
  while (pos < n) {
    if (pos + 2 > n) throw new PaylogError('INTEGRITY_FAILURE', 'entry bundle ends inside a length prefix');
    const len = (bytes[pos]! << 8) | bytes[pos + 1]!;
    if (pos + 2 + len > n) throw new PaylogError('INTEGRITY_FAILURE', 'entry bundle ends inside an entry');
    out.push(new Uint8Array(ab, base + pos + 2, len));
    pos += 2 + len;
  }
  return out;
}
