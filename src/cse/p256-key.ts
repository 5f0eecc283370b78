/**
 * The P-256 ECDH key of a client-side encryption key, derived from its 32-byte seed, and its
 * public JWK (RFC 7517; JWE `ECDH-ES` + `A256GCM`, RFC 7518 §4.6 / §5.3).
 *
 * Contracts:
 * - The private scalar is derived from the seed (`deriveP256Scalar`, FIPS 186-5 §A.2.1 with
 *   HKDF-SHA256 as the source of the extra bits) and imported as a NON-EXTRACTABLE WebCrypto
 *   `CryptoKey`; the scalar and the PKCS#8 bytes are zeroed right after the import (the caller
 *   zeroes the seed). The imported key lives inside OpenSSL and cannot be wiped from JavaScript.
 * - The derivation is STABLE: the same seed MUST give the same key (keys are re-derived after
 *   every cache eviction, and `cse_key_created` commits to the public point).
 * - No I/O.
 */
import { createPrivateKey, createPublicKey, hkdfSync, webcrypto } from 'node:crypto';
import { PaylogError } from '../errors.js';

/** JWE algorithms paylog accepts, and the only ones the JWK Set advertises. */
export const CSE_KEY_MANAGEMENT_ALGORITHM = 'ECDH-ES';
export const CSE_CONTENT_ENCRYPTION_ALGORITHM = 'A256GCM';
/** HKDF info label for the P-256 scalar (domain separation from every other use of the seed). */
const SCALAR_INFO = Buffer.from('paylog/cse/p256-scalar/v1', 'ascii');
/** FIPS 186-5 §A.2.1: len(n) + 64 bits of randomness for a negligibly biased scalar. */
const SCALAR_SOURCE_BYTES = 40;
/** Order of the P-256 base point (SEC 2 §2.4.2). */
const P256_N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
/** PKCS#8 PrivateKeyInfo prefix for id-ecPublicKey / prime256v1 with a bare ECPrivateKey (RFC 5915). */
const P256_PKCS8_PREFIX = Buffer.from('3041020100301306072a8648ce3d020106082a8648ce3d030107042730250201010420', 'hex');

export interface CsePublicJwk {
  kty: 'EC';
  crv: 'P-256';
  x: string;
  y: string;
  kid: string;
  use: 'enc';
  alg: typeof CSE_KEY_MANAGEMENT_ALGORITHM;
}

/** A CSE key ready to decrypt: its non-extractable private key and its public JWK. */
export interface LoadedKey {
  readonly kid: string;
  readonly privateKey: webcrypto.CryptoKey;
  readonly publicJwk: CsePublicJwk;
}

/**
 * FIPS 186-5 §A.2.1 (ECDSA/ECDH key pair generation using extra random bits): c = 40 bytes from
 * HKDF-SHA256(seed), d = (c mod (n − 1)) + 1. Returns d as 32 big-endian bytes (caller zeroes).
 */
export function deriveP256Scalar(seed: Buffer): Buffer {
  const c = Buffer.from(hkdfSync('sha256', seed, Buffer.alloc(0), SCALAR_INFO, SCALAR_SOURCE_BYTES));
  const d = (BigInt(`0x${c.toString('hex')}`) % (P256_N - 1n)) + 1n;
  c.fill(0);
  return Buffer.from(d.toString(16).padStart(64, '0'), 'hex');
}

/** Seed → non-extractable ECDH private key + public JWK; every intermediate buffer is zeroed. */
export async function importCseKey(kid: string, seed: Buffer): Promise<LoadedKey> {
  const d = deriveP256Scalar(seed);
  const pkcs8 = Buffer.concat([P256_PKCS8_PREFIX, d]);
  d.fill(0);
  try {
    const jwk = createPublicKey(createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' })).export({ format: 'jwk' });
    const privateKey = await webcrypto.subtle.importKey('pkcs8', pkcs8, { name: 'ECDH', namedCurve: 'P-256' }, false, ['deriveBits']);
    if (typeof jwk.x !== 'string' || typeof jwk.y !== 'string') throw new PaylogError('INTERNAL', 'CSE public key could not be computed');
    return {
      kid,
      privateKey,
      publicJwk: { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y, kid, use: 'enc', alg: CSE_KEY_MANAGEMENT_ALGORITHM },
    };
  } finally {
    pkcs8.fill(0);
  }
}

/** The uncompressed P-256 point (SEC 1 §2.3.3) of a public JWK: what `cse_key_created` hashes. */
export function publicPoint(jwk: CsePublicJwk): Buffer {
  return Buffer.concat([Buffer.from([0x04]), Buffer.from(jwk.x, 'base64url'), Buffer.from(jwk.y, 'base64url')]);
}
