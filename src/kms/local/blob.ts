/**
 * Local dev KMS endpoint — the ciphertext blob (DEV-ONLY).
 *
 * Ciphertext blob format (version 1), produced by Encrypt / GenerateDataKey / ReEncrypt:
 *
 *   offset 0        1 byte   version = 0x01
 *   offset 1        1 byte   L = length of the key id in bytes
 *   offset 2        L bytes  key id (UUID, ASCII)
 *   offset 2+L     12 bytes  AES-GCM IV (random)
 *   offset 14+L     n bytes  AES-256-GCM ciphertext of the plaintext
 *   last           16 bytes  GCM tag
 *
 * AAD = blob header (version, L, key id) || canonicalEncryptionContext(context), where the
 * canonical encoding is u32be(pair count) followed, for each pair in ascending order of the
 * key's UTF-8 bytes, by u32be(len(key)) || key || u32be(len(value)) || value (UTF-8). It is
 * unambiguous (`{"ab":"c"}` ≠ `{"a":"bc"}`), exact and case-sensitive: Decrypt with a missing,
 * extra or changed context entry fails GCM authentication → InvalidCiphertextException.
 *
 * Contract: every failure to open a blob is InvalidCiphertextException (IncorrectKeyException
 * when an explicit KeyId names another key); key material is zeroed after each use. The format
 * MUST NOT change: blobs already stored in dev data directories must still open.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { KeyStore, StoredKey } from './keystore.js';
import { requireSymmetric, requireUsable, resolveKey } from './keys.js';
import { KmsWireError } from './wire.js';

const BLOB_VERSION = 0x01;
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** Canonical, unambiguous encoding of an encryption context (module comment). */
function canonicalEncryptionContext(context: Record<string, string>): Buffer {
  const pairs = Object.entries(context).map(([k, v]) => [Buffer.from(k, 'utf8'), Buffer.from(v, 'utf8')] as const);
  pairs.sort((a, b) => Buffer.compare(a[0], b[0]));
  const parts: Buffer[] = [u32be(pairs.length)];
  for (const [k, v] of pairs) parts.push(u32be(k.length), k, u32be(v.length), v);
  return Buffer.concat(parts);
}

function u32be(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

function blobHeader(keyId: string): Buffer {
  const id = Buffer.from(keyId, 'ascii');
  return Buffer.concat([Buffer.from([BLOB_VERSION, id.length]), id]);
}

function sealBlob(keyId: string, keyMaterial: Buffer, plaintext: Buffer, context: Record<string, string>): Buffer {
  const header = blobHeader(keyId);
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', keyMaterial, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(Buffer.concat([header, canonicalEncryptionContext(context)]));
  const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([header, iv, ct, cipher.getAuthTag()]);
}

interface ParsedBlob {
  readonly keyId: string;
  readonly header: Buffer;
  readonly iv: Buffer;
  readonly ciphertext: Buffer;
  readonly tag: Buffer;
}

function parseBlob(blob: Buffer): ParsedBlob {
  const invalid = new KmsWireError('InvalidCiphertextException', 'The ciphertext is invalid.');
  if (blob.length < 2 || blob[0] !== BLOB_VERSION) throw invalid;
  const idLen = blob[1] ?? 0;
  const headerLen = 2 + idLen;
  if (idLen === 0 || blob.length < headerLen + IV_BYTES + TAG_BYTES) throw invalid;
  return {
    keyId: blob.subarray(2, headerLen).toString('ascii'),
    header: blob.subarray(0, headerLen),
    iv: blob.subarray(headerLen, headerLen + IV_BYTES),
    ciphertext: blob.subarray(headerLen + IV_BYTES, blob.length - TAG_BYTES),
    tag: blob.subarray(blob.length - TAG_BYTES),
  };
}

/** Decrypt's key checks, in AWS order: explicit KeyId must resolve and match the blob's key. */
export function openBlob(
  store: KeyStore,
  region: string,
  blob: Buffer,
  context: Record<string, string>,
  keyIdInput: string | undefined,
): { key: StoredKey; plaintext: Buffer } {
  const parsed = parseBlob(blob);
  const requested = keyIdInput === undefined ? undefined : resolveKey(store, region, keyIdInput);
  const key = store.keys.get(parsed.keyId);
  if (requested !== undefined && requested.keyId !== parsed.keyId) {
    throw new KmsWireError('IncorrectKeyException', 'The key ID in the request does not identify a KMS key that can perform this operation.');
  }
  if (key === undefined || key.region !== region) {
    throw new KmsWireError('InvalidCiphertextException', 'The ciphertext is invalid.');
  }
  requireUsable(key);
  const material = requireSymmetric(key);
  try {
    const decipher = createDecipheriv('aes-256-gcm', material, parsed.iv, { authTagLength: TAG_BYTES });
    decipher.setAAD(Buffer.concat([parsed.header, canonicalEncryptionContext(context)]));
    decipher.setAuthTag(parsed.tag);
    return { key, plaintext: Buffer.concat([decipher.update(parsed.ciphertext), decipher.final()]) };
  } catch {
    throw new KmsWireError('InvalidCiphertextException', 'The ciphertext is invalid.');
  } finally {
    material.fill(0);
  }
}

export function encryptUnder(key: StoredKey, plaintext: Buffer, context: Record<string, string>): Buffer {
  requireUsable(key);
  const material = requireSymmetric(key);
  try {
    return sealBlob(key.keyId, material, plaintext, context);
  } finally {
    material.fill(0);
  }
}
