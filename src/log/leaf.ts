/**
 * Log leaf format, version 1: the exact bytes hashed into the RFC 9162 tree
 * (leaf hash = SHA-256(0x00 ‖ leaf), RFC 9162 §2.1.1).
 *
 * leaf = UTF-8( RFC 8785 canonical JSON of one of the objects below )
 *
 * Every leaf has `v` (format version, 1), `type` and `time` (RFC 3339 UTC, milliseconds).
 * Leaves never hold plaintext card or account data: a transaction leaf commits to the
 * ciphertext by SHA-256 and to the data key by its key commitment and the SHA-256 of the wrapped
 * key as first stored. Rewrap and crypto-shredding replace or delete the wrapped key beside the
 * log and are recorded as `key_event` leaves; no existing leaf ever changes.
 */
import { z } from 'zod';
import { canonicalJson, isCanonicalJsonText } from '../crypto/canonical-json.js';

const UTF8 = new TextDecoder('utf-8', { fatal: true });
import { PaylogError } from '../errors.js';

export const LEAF_FORMAT_VERSION = 1;
/** Upper bound on one leaf's size; larger input is refused before it reaches the log. */
export const MAX_LEAF_BYTES = 16 * 1024;

/** Base64 of a 32-byte digest (SHA-256, key commitment). */
const b64 = z.string().regex(/^[A-Za-z0-9+/]{43}=$/);
const time = z.string().regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
const id = z.string().min(1).max(128);

export const transactionLeafSchema = z
  .object({
    v: z.literal(LEAF_FORMAT_VERSION),
    type: z.literal('transaction'),
    time,
    transactionId: id,
    processor: id,
    amount: z.object({ value: z.number().int().positive(), currency: z.string().regex(/^[A-Z]{3}$/) }).strict(),
    paymentMethodType: z.enum(['card', 'us_bank_account', 'iban']),
    envelope: z
      .object({
        version: z.number().int().positive(),
        ciphertextSha256: b64,
        keyCommitment: b64,
        wrappedKeySha256: b64,
        // Key reference: a KMS key id (envelope v1) or a key epoch id (envelope v2). Interim
        // until leaf format v2 (leaf-v2-core) defines the reference.
        kmsKeyId: z.string().min(1).max(2048).optional(),
        epochId: id.optional(),
      })
      .strict()
      .refine((e) => (e.kmsKeyId === undefined) !== (e.epochId === undefined), { message: 'exactly one key reference' }),
    metadataSha256: b64.optional(),
  })
  .strict();

export const accessLeafSchema = z
  .object({
    v: z.literal(LEAF_FORMAT_VERSION),
    type: z.literal('access'),
    time,
    transactionId: id,
    action: z.enum(['release', 'read']),
    principal: z
      .object({ role: z.string().min(1).max(32), name: z.string().min(1).max(128), certificateFingerprint: z.string().regex(/^sha256:[0-9a-f]{64}$/) })
      .strict(),
    purpose: z.string().max(32).optional(),
    reference: z.string().max(256).optional(),
    outcome: z.enum(['granted', 'denied']),
    reason: z.string().max(64).optional(),
    sourceAddress: z.string().max(64),
  })
  .strict();

export const keyEventLeafSchema = z
  .object({
    v: z.literal(LEAF_FORMAT_VERSION),
    type: z.literal('key_event'),
    time,
    event: z.enum([
      'rewrap',
      'shred',
      'signing_key_added',
      'signing_key_retired',
      // Key lifecycle (issue 9), interim fields until leaf format v2 (leaf-v2-core).
      'epoch_created',
      'epoch_retired',
      'epoch_rewrapped',
      'epoch_shredded',
      'transaction_shredded',
      'rotation',
      'retention_run',
    ]),
    transactionId: id.optional(),
    kmsKeyId: z.string().max(2048).optional(),
    wrappedKeySha256: b64.optional(),
    keyName: z.string().max(256).optional(),
    epochId: id.optional(),
    processor: id.optional(),
    periodStart: time.optional(),
    periodEnd: time.optional(),
    actor: z
      .object({ role: z.string().min(1).max(32), name: z.string().min(1).max(128), certificateFingerprint: z.string().regex(/^sha256:[0-9a-f]{64}$/).optional() })
      .strict()
      .optional(),
    reason: z.string().max(256).optional(),
    policy: z.string().max(256).optional(),
    counts: z.record(z.string().max(64), z.number().int().nonnegative()).optional(),
  })
  .strict();

export const leafSchema = z.discriminatedUnion('type', [transactionLeafSchema, accessLeafSchema, keyEventLeafSchema]);

export type TransactionLeaf = z.infer<typeof transactionLeafSchema>;
export type AccessLeaf = z.infer<typeof accessLeafSchema>;
export type KeyEventLeaf = z.infer<typeof keyEventLeafSchema>;
export type Leaf = z.infer<typeof leafSchema>;

/** Serialises a leaf to its canonical bytes (RFC 8785). */
export function encodeLeaf(leaf: Leaf): Buffer {
  const bytes = Buffer.from(canonicalJson(leaf), 'utf8');
  if (bytes.length > MAX_LEAF_BYTES) throw new PaylogError('VALIDATION_FAILED', 'log entry too large');
  return bytes;
}

/**
 * Parses and checks leaf bytes: valid UTF-8 JSON, a known version and type with exactly the
 * documented fields, and canonical (re-encoding yields the same bytes).
 */
export function decodeLeaf(bytes: Uint8Array): Leaf {
  let text: string;
  let parsed: unknown;
  try {
    text = UTF8.decode(bytes);
    parsed = JSON.parse(text);
  } catch {
    throw new PaylogError('INTEGRITY_FAILURE', 'leaf is not UTF-8 JSON');
  }
  if (!isCanonicalJsonText(text, parsed)) throw new PaylogError('INTEGRITY_FAILURE', 'leaf is not in canonical form');
  const result = leafSchema.safeParse(parsed);
  if (!result.success) throw new PaylogError('INTEGRITY_FAILURE', 'leaf does not match leaf format v1');
  return result.data;
}

/** RFC 3339 UTC timestamp with milliseconds, as used in leaves. */
export function leafTime(d: Date): string {
  return d.toISOString();
}
