/**
 * Leaf format v1 (kept for verification of existing logs; new entries are v3):
 * UTF-8 RFC 8785 canonical JSON, `v` = 1, `type`, `time` (RFC 3339 UTC, ms).
 */
import { z } from 'zod';
import { b64Digest, epochId, id, isoTime } from './fields.js';

export const LEAF_FORMAT_V1 = 1;

export const transactionLeafV1Schema = z
  .object({
    v: z.literal(LEAF_FORMAT_V1),
    type: z.literal('transaction'),
    time: isoTime,
    transactionId: id,
    processor: id,
    amount: z.object({ value: z.number().int().positive(), currency: z.string().regex(/^[A-Z]{3}$/) }).strict(),
    paymentMethodType: z.enum(['card', 'us_bank_account', 'iban']),
    envelope: z
      .object({
        version: z.number().int().positive(),
        ciphertextSha256: b64Digest,
        keyCommitment: b64Digest,
        wrappedKeySha256: b64Digest,
        // Key reference: the KMS key (envelope v1) or, for envelope v2 records sealed while
        // transaction leaves are still v1 JSON, the key epoch (issue 9). Exactly one.
        kmsKeyId: z.string().min(1).max(2048).optional(),
        epochId: epochId.optional(),
      })
      .strict()
      .refine((e) => (e.kmsKeyId === undefined) !== (e.epochId === undefined), { message: 'exactly one key reference' }),
    metadataSha256: b64Digest.optional(),
  })
  .strict();

export const accessLeafV1Schema = z
  .object({
    v: z.literal(LEAF_FORMAT_V1),
    type: z.literal('access'),
    time: isoTime,
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

export const keyEventLeafV1Schema = z
  .object({
    v: z.literal(LEAF_FORMAT_V1),
    type: z.literal('key_event'),
    time: isoTime,
    event: z.enum(['rewrap', 'shred', 'signing_key_added', 'signing_key_retired']),
    transactionId: id.optional(),
    kmsKeyId: z.string().max(2048).optional(),
    wrappedKeySha256: b64Digest.optional(),
    keyName: z.string().max(256).optional(),
  })
  .strict();

export const leafV1Schema = z.discriminatedUnion('type', [transactionLeafV1Schema, accessLeafV1Schema, keyEventLeafV1Schema]);

export type TransactionLeafV1 = z.infer<typeof transactionLeafV1Schema>;
export type AccessLeafV1 = z.infer<typeof accessLeafV1Schema>;
export type KeyEventLeafV1 = z.infer<typeof keyEventLeafV1Schema>;
export type LeafV1 = z.infer<typeof leafV1Schema>;
