/**
 * RFC 5869 HKDF-SHA256 with L = 32 (one output block), as the envelope formats use it.
 *
 * MUST: produce byte-for-byte what `hkdfSync('sha256', ikm, salt, info, 32)` returns (tested in
 *       test/envelope.test.ts), while letting a caller share one Extract across several labels.
 * MUST NOT: keep any key material; the caller zeroes every returned Buffer (PRK and OKM).
 */
import { createHmac } from 'node:crypto';

const HKDF_HASH = 'sha256';
const HKDF_BLOCK_1 = Buffer.from([0x01]);

// RFC 5869 §2.2 HKDF-Extract: PRK = HMAC-Hash(salt, IKM). The caller zeroes the result.
export function hkdfExtract(salt: Buffer, ikm: Buffer): Buffer {
  return createHmac(HKDF_HASH, salt).update(ikm).digest();
}

// RFC 5869 §2.3 HKDF-Expand for L = 32 ≤ HashLen: OKM = T(1) = HMAC-Hash(PRK, info ‖ 0x01).
// Byte-for-byte what hkdfSync(HKDF_HASH, ikm, salt, info, 32) returns (tested), with one Extract
// shared by both labels instead of one per label.
export function hkdfExpand32(prk: Buffer, info: Buffer): Buffer {
  return createHmac(HKDF_HASH, prk).update(info).update(HKDF_BLOCK_1).digest();
}

/** HKDF-SHA256(dataKey, salt, info, 32) for ASCII labels; the caller zeroes the result. */
export function hkdf32(dataKey: Buffer, salt: Buffer, info: string): Buffer {
  const prk = hkdfExtract(salt, dataKey);
  try {
    return hkdfExpand32(prk, Buffer.from(info, 'ascii'));
  } finally {
    prk.fill(0);
  }
}
