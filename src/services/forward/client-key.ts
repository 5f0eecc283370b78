/**
 * A destination's mTLS client key at rest (issue 18 item 1): sealed under a fresh KMS data key
 * (AES-256-GCM, the context as associated data), the data key wrapped by KMS bound to the same
 * context (processor and destination name). Only this blob is stored; the PEM is never served,
 * logged or kept beyond building the destination's connection pool.
 *
 * Blob: u16 length of the wrapped data key ‖ wrapped data key ‖ 12-byte IV ‖ 16-byte tag ‖ ciphertext.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { KmsBackend } from '../../kms/backend.js';
import { PaylogError } from '../../errors.js';
import { canonicalJson } from '../../crypto/canonical-json.js';
import { IV_BYTES, TAG_BYTES } from '../../crypto/envelope.js';

/** KMS encryption context key of a destination client key (docs/operations.md IAM policy). */
const CLIENT_KEY_CONTEXT_KEY = 'paylog:forward-client-key';

/** The encryption context binding a client key to its destination: `<processor>/<destination>`. */
export function clientKeyContext(processor: string, destination: string): Record<string, string> {
  return { [CLIENT_KEY_CONTEXT_KEY]: `${processor}/${destination}` };
}

export async function sealClientKey(kms: KmsBackend, kmsKeyId: string, pem: Buffer, context: Record<string, string>): Promise<Buffer> {
  const { plaintext, wrappedKey } = await kms.generateDataKey(kmsKeyId, context);
  try {
    const iv = randomBytes(IV_BYTES);
    const c = createCipheriv('aes-256-gcm', plaintext, iv);
    c.setAAD(Buffer.from(canonicalJson(context), 'utf8'));
    const ct = Buffer.concat([c.update(pem), c.final()]);
    const len = Buffer.alloc(2);
    len.writeUInt16BE(wrappedKey.length);
    return Buffer.concat([len, wrappedKey, iv, c.getAuthTag(), ct]);
  } finally {
    plaintext.fill(0);
  }
}

/** The PEM (caller zeroes it). INTEGRITY_FAILURE when the blob or context does not match. */
export async function openClientKey(kms: KmsBackend, kmsKeyId: string, blob: Buffer, context: Record<string, string>): Promise<Buffer> {
  const bad = () => new PaylogError('INTEGRITY_FAILURE', 'a destination client key does not open');
  if (blob.length < 2) throw bad();
  const n = blob.readUInt16BE(0);
  if (blob.length < 2 + n + IV_BYTES + TAG_BYTES) throw bad();
  const wrapped = blob.subarray(2, 2 + n);
  const iv = blob.subarray(2 + n, 2 + n + IV_BYTES);
  const tag = blob.subarray(2 + n + IV_BYTES, 2 + n + IV_BYTES + TAG_BYTES);
  const key = await kms.decryptDataKey(Buffer.from(wrapped), context, kmsKeyId);
  try {
    const d = createDecipheriv('aes-256-gcm', key, iv);
    d.setAAD(Buffer.from(canonicalJson(context), 'utf8'));
    d.setAuthTag(tag);
    return Buffer.concat([d.update(blob.subarray(2 + n + IV_BYTES + TAG_BYTES)), d.final()]);
  } catch {
    throw bad();
  } finally {
    key.fill(0);
  }
}
