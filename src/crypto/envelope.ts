/**
 * Envelope encryption of one record's plaintext under a fresh KMS data key (format version 1).
 *
 * ## Format v1 (byte level)
 *
 * Notation: `LP(x)` = 4-byte unsigned big-endian length of `x` ‖ `x`; `u8(n)` = one byte;
 * labels are ASCII. A sealed record stores these fields:
 *
 * | field           | size      | content                                                       |
 * |-----------------|-----------|---------------------------------------------------------------|
 * | `version`       | 1 (u8)    | `0x01`                                                        |
 * | `salt`          | 32 bytes  | random per record (CSPRNG), HKDF salt                         |
 * | `iv`            | 12 bytes  | random per record (CSPRNG), AES-GCM nonce                     |
 * | `ciphertext`    | len(pt)   | AES-256-GCM ciphertext of the plaintext                       |
 * | `tag`           | 16 bytes  | AES-GCM authentication tag (full length, never truncated)     |
 * | `keyCommitment` | 32 bytes  | key-commitment value, see below                               |
 * | `wrappedKey`    | variable  | KMS ciphertext of the 32-byte data key                        |
 * | `kmsKeyId`      | string    | KMS key that wrapped the data key                             |
 *
 * Keys (RFC 5869 HKDF-SHA256, IKM = the 32-byte plaintext data key, salt = `salt`):
 * - AES key   `K_enc = HKDF(IKM, salt, info = "paylog/envelope/v1/encryption-key", L = 32)`
 * - commitment `C    = HKDF(IKM, salt, info = "paylog/envelope/v1/key-commitment", L = 32)`
 *
 * The design follows the AWS Encryption SDK committing suite (message format v2): a random
 * 32-byte per-message salt, two HKDF outputs with distinct labels, the commitment stored in the
 * clear and checked in constant time BEFORE any decryption. The separate salt (rather than the
 * IV) means every record gets its own AES key even if a data key were ever reused (e.g. by the
 * benchmark), so GCM nonce-collision bounds never come into play.
 *
 * Encryption: `ciphertext ‖ tag = AES-256-GCM(K_enc, iv, plaintext, AAD)` with
 * `AAD = LP("paylog/envelope/v1/aad") ‖ u8(version) ‖ LP(utf8 transactionId) ‖ LP(utf8 processor)`.
 *
 * Data key wrapping: `wrappedKey` is produced by KMS under the encryption context
 * `{"paylog:envelope":"v1","paylog:transaction-id":<id>,"paylog:processor":<name>}`, so the key
 * itself is also bound to the record (note: KMS logs the context in the clear, e.g. CloudTrail).
 *
 * Log commitment (`ciphertextDigest`):
 * `SHA-256(LP("paylog/envelope/v1/digest") ‖ u8(version) ‖ LP(salt) ‖ LP(iv) ‖ LP(ciphertext)
 *  ‖ LP(tag) ‖ LP(keyCommitment))`. It covers everything that determines the plaintext given
 * the data key; `wrappedKey`/`kmsKeyId` are deliberately outside it so a data key can be
 * re-wrapped under a new KMS key without changing the log, while the commitment `C` still pins
 * the one data key that opens the record.
 *
 * Opening: check version and field lengths, unwrap the data key via KMS, recompute `C` and
 * compare with `timingSafeEqual`, then GCM-decrypt; plaintext is released only after the tag
 * verifies. Every failure is `PaylogError('INTEGRITY_FAILURE')` with `details.reason` one of
 * `ENVELOPE_REASONS`. All plaintext data keys and derived keys are zeroed after use.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  randomBytes,
  timingSafeEqual,
} from 'node:crypto';
import { PaylogError, isPaylogError } from '../errors.js';
import { hkdf32, hkdfExpand32, hkdfExtract } from './hkdf.js';

export const ENVELOPE_FORMAT_VERSION = 1;

/** AES-256-GCM parameters (NIST SP 800-38D: 96-bit IV, 128-bit tag). */
export const DATA_KEY_BYTES = 32;
export const SALT_BYTES = 32;
export const IV_BYTES = 12;
export const TAG_BYTES = 16;
const KEY_COMMITMENT_BYTES = 32;

const CIPHER = 'aes-256-gcm';
const LABEL_ENCRYPTION_KEY = 'paylog/envelope/v1/encryption-key';
const LABEL_KEY_COMMITMENT = 'paylog/envelope/v1/key-commitment';
const LABEL_AAD = 'paylog/envelope/v1/aad';
const LABEL_DIGEST = 'paylog/envelope/v1/digest';
const INFO_ENCRYPTION_KEY = Buffer.from(LABEL_ENCRYPTION_KEY, 'ascii');
const INFO_KEY_COMMITMENT = Buffer.from(LABEL_KEY_COMMITMENT, 'ascii');

/** KMS encryption-context keys (stable: changing them makes existing wrapped keys unopenable). */
const KMS_CONTEXT_TRANSACTION_ID = 'paylog:transaction-id';
const KMS_CONTEXT_PROCESSOR = 'paylog:processor';
const KMS_CONTEXT_ENVELOPE = 'paylog:envelope';

/** Values of `details.reason` on an INTEGRITY_FAILURE (no secret is revealed by them). */
export const ENVELOPE_REASONS = {
  malformed: 'MALFORMED_ENVELOPE',
  version: 'UNSUPPORTED_VERSION',
  keyUnwrap: 'DATA_KEY_UNWRAP_FAILED',
  commitment: 'KEY_COMMITMENT_MISMATCH',
  authentication: 'AUTHENTICATION_FAILED',
} as const;

/** What a record is bound to: it opens only for the same transaction and processor. */
export interface EnvelopeBinding {
  transactionId: string;
  processor: string;
}

/**
 * Implemented by the KMS wrapper. `generateDataKey` returns a FRESH 256-bit key per call, which
 * the caller zeroes after use. `decryptDataKey` must verify `context` (KMS encryption context)
 * and reject with `PaylogError('INTEGRITY_FAILURE')` when the wrapped key or context do not
 * authenticate, or `PaylogError('KMS_UNAVAILABLE')` when KMS cannot be reached. Other errors
 * are reported as KMS_UNAVAILABLE.
 */
export interface DataKeySource {
  generateDataKey(
    context: Record<string, string>,
  ): Promise<{ plaintext: Buffer; wrappedKey: Buffer; keyId: string }>;
  decryptDataKey(
    wrappedKey: Buffer,
    context: Record<string, string>,
    keyId: string,
  ): Promise<Buffer>;
}

/** The fields every envelope format seals a record into (lengths: checkEnvelopeFields). */
export interface SealedFields {
  salt: Buffer;
  iv: Buffer;
  ciphertext: Buffer;
  tag: Buffer;
  keyCommitment: Buffer;
  /** The data key, wrapped (by KMS in v1, by HPKE under the epoch public key in v2). */
  wrappedKey: Buffer;
}

export interface SealedEnvelope extends SealedFields {
  version: 1;
  kmsKeyId: string;
}

/** The part of a sealed envelope that the data key alone opens (and the log commits to). */
export type EnvelopeCiphertext = Omit<SealedEnvelope, 'wrappedKey' | 'kmsKeyId'>;

export function integrityFailure(reason: string, cause?: unknown): PaylogError {
  return new PaylogError(
    'INTEGRITY_FAILURE',
    'Encrypted record failed its integrity check',
    { reason },
    cause === undefined ? undefined : { cause },
  );
}

// LP(label) ‖ u8(version) ‖ LP(field)…, written into one allocation.
export function encodeFields(label: string, version: number, fields: Buffer[]): Buffer {
  const labelLength = Buffer.byteLength(label, 'ascii');
  let size = 4 + labelLength + 1;
  for (const f of fields) size += 4 + f.length;
  const out = Buffer.allocUnsafe(size);
  let at = out.writeUInt32BE(labelLength, 0);
  at += out.write(label, at, 'ascii');
  at = out.writeUInt8(version, at);
  for (const f of fields) {
    at = out.writeUInt32BE(f.length, at);
    at += f.copy(out, at);
  }
  return out;
}

/**
 * Salt, IV and envelope v2 data keys come from the CSPRNG in blocks (one randomBytes call per
 * RANDOM_POOL_BYTES instead of one call per record: a CSPRNG call costs about 3 µs whatever its
 * size). Each byte is handed out once, as a copy, and zeroed in the pool as it is handed out, so a
 * secret taken from here (a data key) exists only in the caller's copy, which the caller zeroes.
 */
const RANDOM_POOL_BYTES = 4096;
let randomPool = Buffer.alloc(0);
let randomAt = 0;
export function freshRandom(n: number): Buffer {
  if (randomAt + n > randomPool.length) {
    randomPool = randomBytes(RANDOM_POOL_BYTES);
    randomAt = 0;
  }
  const out = Buffer.from(randomPool.subarray(randomAt, randomAt + n)); // a copy: the pool block is never shared
  randomPool.fill(0, randomAt, randomAt + n);
  randomAt += n;
  return out;
}

function assertBinding(b: EnvelopeBinding): void {
  if (
    typeof b?.transactionId !== 'string' ||
    typeof b.processor !== 'string' ||
    b.transactionId.length === 0 ||
    b.processor.length === 0
  ) {
    throw new PaylogError('INTERNAL', 'Envelope binding needs a transactionId and a processor');
  }
}

/** KMS encryption context naming the record's transaction, processor and envelope format. */
export function kmsEncryptionContext(b: EnvelopeBinding): Record<string, string> {
  assertBinding(b);
  return {
    [KMS_CONTEXT_ENVELOPE]: `v${ENVELOPE_FORMAT_VERSION}`,
    [KMS_CONTEXT_TRANSACTION_ID]: b.transactionId,
    [KMS_CONTEXT_PROCESSOR]: b.processor,
  };
}

// Format v1 AAD: LP(label) ‖ u8(version) ‖ LP(transactionId) ‖ LP(processor).
function additionalData(b: EnvelopeBinding): Buffer {
  return encodeFields(LABEL_AAD, ENVELOPE_FORMAT_VERSION, [
    Buffer.from(b.transactionId, 'utf8'),
    Buffer.from(b.processor, 'utf8'),
  ]);
}

function assertDataKey(dataKey: Buffer): void {
  if (!Buffer.isBuffer(dataKey) || dataKey.length !== DATA_KEY_BYTES) {
    throw new PaylogError('INTERNAL', 'Data key must be 32 bytes');
  }
}

/**
 * Encrypts `plaintext` under a key derived from `dataKey` (format v1). Does not modify or zero
 * `dataKey` (the caller owns it); derived keys are zeroed before returning.
 */
export function encryptWithDataKey(
  dataKey: Buffer,
  b: EnvelopeBinding,
  plaintext: Buffer,
): EnvelopeCiphertext {
  assertDataKey(dataKey);
  assertBinding(b);
  const random = freshRandom(SALT_BYTES + IV_BYTES);
  const salt = random.subarray(0, SALT_BYTES);
  const iv = random.subarray(SALT_BYTES);
  const prk = hkdfExtract(salt, dataKey);
  const encKey = hkdfExpand32(prk, INFO_ENCRYPTION_KEY);
  const keyCommitment = hkdfExpand32(prk, INFO_KEY_COMMITMENT);
  prk.fill(0);
  try {
    const cipher = createCipheriv(CIPHER, encKey, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(additionalData(b));
    const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return {
      version: ENVELOPE_FORMAT_VERSION,
      salt,
      iv,
      ciphertext,
      tag: cipher.getAuthTag(),
      keyCommitment,
    };
  } finally {
    encKey.fill(0);
  }
}

/**
 * The shape check every envelope format shares: exact `version` and field lengths, before any
 * key material is touched (format v1 here, v2 in envelope-v2.ts).
 */
export function checkEnvelopeFields(
  env: { version: number; salt: unknown; iv: unknown; ciphertext: unknown; tag: unknown; keyCommitment: unknown } | null,
  version: number,
): void {
  if (env === null || typeof env !== 'object') throw integrityFailure(ENVELOPE_REASONS.malformed);
  if (env.version !== version) throw integrityFailure(ENVELOPE_REASONS.version);
  const lengths: Array<[unknown, number | null]> = [
    [env.salt, SALT_BYTES],
    [env.iv, IV_BYTES],
    [env.ciphertext, null],
    [env.tag, TAG_BYTES],
    [env.keyCommitment, KEY_COMMITMENT_BYTES],
  ];
  for (const [field, expected] of lengths) {
    if (!Buffer.isBuffer(field) || (expected !== null && field.length !== expected)) {
      throw integrityFailure(ENVELOPE_REASONS.malformed);
    }
  }
}

const checkEnvelopeShape = (env: EnvelopeCiphertext): void => checkEnvelopeFields(env, ENVELOPE_FORMAT_VERSION);

// Key commitment check (AWS ESDK message format v2 style): constant-time, before decryption.
function verifyKeyCommitment(dataKey: Buffer, env: EnvelopeCiphertext): void {
  const expected = hkdf32(dataKey, env.salt, LABEL_KEY_COMMITMENT);
  try {
    if (!timingSafeEqual(expected, env.keyCommitment)) {
      throw integrityFailure(ENVELOPE_REASONS.commitment);
    }
  } finally {
    expected.fill(0);
  }
}

/**
 * Opens a format-v1 envelope with the plaintext data key. Throws INTEGRITY_FAILURE (never
 * returns partial or wrong data) on any mismatch. Does not zero `dataKey` (caller owns it).
 */
export function decryptWithDataKey(
  dataKey: Buffer,
  b: EnvelopeBinding,
  env: EnvelopeCiphertext,
): Buffer {
  assertBinding(b);
  checkEnvelopeShape(env);
  if (!Buffer.isBuffer(dataKey) || dataKey.length !== DATA_KEY_BYTES) {
    throw integrityFailure(ENVELOPE_REASONS.keyUnwrap);
  }
  verifyKeyCommitment(dataKey, env);
  const encKey = hkdf32(dataKey, env.salt, LABEL_ENCRYPTION_KEY);
  let head: Buffer | undefined;
  try {
    const decipher = createDecipheriv(CIPHER, encKey, env.iv, { authTagLength: TAG_BYTES });
    decipher.setAAD(additionalData(b));
    decipher.setAuthTag(env.tag);
    head = decipher.update(env.ciphertext);
    const tail = decipher.final(); // throws when the tag does not verify
    return tail.length === 0 ? head : Buffer.concat([head, tail]);
  } catch (e) {
    head?.fill(0); // unauthenticated plaintext never leaves this function
    throw integrityFailure(ENVELOPE_REASONS.authentication, e);
  } finally {
    encKey.fill(0);
  }
}

/** SHA-256 over the unambiguous encoding of the ciphertext fields (format doc above). */
export function ciphertextDigest(env: EnvelopeCiphertext): Buffer {
  checkEnvelopeShape(env);
  return createHash('sha256')
    .update(
      encodeFields(LABEL_DIGEST, env.version, [
        env.salt,
        env.iv,
        env.ciphertext,
        env.tag,
        env.keyCommitment,
      ]),
    )
    .digest();
}

function asKmsError(e: unknown): PaylogError {
  return isPaylogError(e)
    ? e
    : new PaylogError('KMS_UNAVAILABLE', 'Key service call failed', undefined, { cause: e });
}

/** Seals `plaintext` under a fresh KMS data key bound to `b`; the plaintext key is zeroed. */
export async function sealEnvelope(
  keys: DataKeySource,
  b: EnvelopeBinding,
  plaintext: Buffer,
): Promise<SealedEnvelope> {
  const context = kmsEncryptionContext(b);
  let dataKey: Awaited<ReturnType<DataKeySource['generateDataKey']>>;
  try {
    dataKey = await keys.generateDataKey(context);
  } catch (e) {
    throw asKmsError(e);
  }
  try {
    const sealed = encryptWithDataKey(dataKey.plaintext, b, plaintext);
    return { ...sealed, wrappedKey: dataKey.wrappedKey, kmsKeyId: dataKey.keyId };
  } finally {
    if (Buffer.isBuffer(dataKey.plaintext)) dataKey.plaintext.fill(0);
  }
}

/** Opens an envelope sealed for `b`; throws INTEGRITY_FAILURE on any mismatch. */
export async function openEnvelope(
  keys: DataKeySource,
  b: EnvelopeBinding,
  env: SealedEnvelope,
): Promise<Buffer> {
  checkEnvelopeShape(env);
  if (!Buffer.isBuffer(env.wrappedKey) || typeof env.kmsKeyId !== 'string') {
    throw integrityFailure(ENVELOPE_REASONS.malformed);
  }
  const context = kmsEncryptionContext(b);
  let dataKey: Buffer;
  try {
    dataKey = await keys.decryptDataKey(env.wrappedKey, context, env.kmsKeyId);
  } catch (e) {
    throw asKmsError(e);
  }
  try {
    return decryptWithDataKey(dataKey, b, env);
  } finally {
    if (Buffer.isBuffer(dataKey)) dataKey.fill(0);
  }
}
