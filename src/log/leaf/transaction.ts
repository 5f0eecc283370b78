/**
 * Transaction leaf, format v2: the entry IS the record. It carries the served view (masked
 * payment method, fingerprint, amount, processor, metadata) and the sealed ciphertext, so what
 * `GET /v1/transactions/{id}` serves and what release decrypts are decoded from the leaf bytes
 * the signed tree commits to. The wrapped data key stays beside the log (`data_keys`: rewrap
 * and shredding replace or delete it); the leaf commits to it by SHA-256 (`env.wk`).
 *
 * The envelope's own bytes and rules (lengths, AAD, key commitment, KMS context / HPKE) belong
 * to `src/crypto/envelope.ts`; the leaf only carries its fields and its key reference.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { bytesUpTo, digest32, epochId, id, kmsKeyId, msOf, msTime } from './fields.js';

export const LEAF_FORMAT_V2 = 2;
/** Upper bound on ciphertext carried in a leaf (the leaf as a whole is bounded by MAX_LEAF_BYTES). */
export const MAX_LEAF_CIPHERTEXT_BYTES = 8 * 1024;

const last4 = z.string().regex(/^\d{0,4}$/);
/** The masked payment method exactly as served (src/crypto/masking.ts `maskedView`). */
export const maskedPaymentMethodSchema = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('card'),
    brand: z.string().min(1).max(32),
    bin: z.string().regex(/^\d{6}(?:\d{2})?$/),
    last4,
    expiryMonth: z.number().int().min(1).max(12),
    expiryYear: z.number().int().min(1000).max(9999),
  }),
  z.strictObject({
    type: z.literal('us_bank_account'),
    routingNumber: z.string().regex(/^\d{9}$/),
    last4,
    accountType: z.enum(['checking', 'savings']),
  }),
  z.strictObject({
    type: z.literal('iban'),
    country: z.string().regex(/^[A-Z]{2}$/),
    last4: z.string().regex(/^[A-Z0-9]{0,4}$/),
    bic: z.string().regex(/^[A-Z0-9]{8}(?:[A-Z0-9]{3})?$/).optional(),
  }),
]);
export type MaskedPaymentMethodV2 = z.infer<typeof maskedPaymentMethodSchema>;

/**
 * `env`: the sealed record. Key reference: exactly one of `kms` (envelope v1, per-transaction
 * mode: the KMS key that wrapped the data key) or `ep` (envelope v2, hierarchical mode: the
 * epoch whose key wrapped it, e.g. `acme/2026-12`).
 */
export const sealedEnvelopeSchema = z
  .strictObject({
    v: z.number().int().min(1).max(255),
    kms: kmsKeyId.optional(),
    ep: epochId.optional(),
    salt: bytesUpTo(64).optional(),
    iv: bytesUpTo(32),
    ct: z.instanceof(Buffer).refine((b) => b.length <= MAX_LEAF_CIPHERTEXT_BYTES),
    tag: bytesUpTo(32),
    kc: digest32,
    wk: digest32,
  })
  .refine((e) => (e.kms === undefined) !== (e.ep === undefined), { message: 'exactly one key reference (kms or ep)' });

export const transactionLeafV2Schema = z.strictObject({
  v: z.literal(LEAF_FORMAT_V2),
  type: z.literal('transaction'),
  time: msTime,
  id,
  p: id,
  amt: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
  cur: z.string().regex(/^[A-Z]{3}$/),
  pm: maskedPaymentMethodSchema,
  fp: z.string().min(1).max(128),
  md: z.record(z.string().min(1).max(64), z.string().max(1024)).optional(),
  env: sealedEnvelopeSchema,
  cse: z.strictObject({ kid: z.string().min(1).max(256) }).optional(),
});
export type TransactionLeafV2 = z.infer<typeof transactionLeafV2Schema>;

/** Key reference of a sealed record. */
export type KeyReference = { kmsKeyId: string } | { epochId: string };

export interface TransactionLeafInput {
  time: Date;
  transactionId: string;
  processor: string;
  amount: { value: number; currency: string };
  /** The masked view (`maskedView(paymentMethod)`), served as is. */
  paymentMethod: MaskedPaymentMethodV2;
  fingerprint: string;
  metadata?: Record<string, string> | null;
  envelope: {
    version: number;
    key: KeyReference;
    /** Omitted (or empty) when the envelope version has no salt. */
    salt?: Buffer | null;
    iv: Buffer;
    ciphertext: Buffer;
    tag: Buffer;
    keyCommitment: Buffer;
    /** The wrapped data key as stored in `data_keys.wrapped_key` (hashed here) ... */
    wrappedKey?: Buffer;
    /** ... or its SHA-256 directly. */
    wrappedKeySha256?: Buffer;
  };
  /** Present when the payment data arrived client-side encrypted: the key id it was encrypted to. */
  cse?: { kid: string };
}

/** Builds a v2 transaction leaf (validated again by `encodeLeaf`). */
export function transactionLeafV2(input: TransactionLeafInput): TransactionLeafV2 {
  const e = input.envelope;
  const wk = e.wrappedKeySha256 ?? (e.wrappedKey ? createHash('sha256').update(e.wrappedKey).digest() : undefined);
  if (wk === undefined) throw new Error('transactionLeafV2: wrappedKey or wrappedKeySha256 required');
  return {
    v: LEAF_FORMAT_V2,
    type: 'transaction',
    time: msOf(input.time),
    id: input.transactionId,
    p: input.processor,
    amt: input.amount.value,
    cur: input.amount.currency,
    pm: input.paymentMethod,
    fp: input.fingerprint,
    ...(input.metadata && Object.keys(input.metadata).length > 0 ? { md: input.metadata } : {}),
    env: {
      v: e.version,
      ...('kmsKeyId' in e.key ? { kms: e.key.kmsKeyId } : { ep: e.key.epochId }),
      ...(e.salt && e.salt.length > 0 ? { salt: e.salt } : {}),
      iv: e.iv,
      ct: e.ciphertext,
      tag: e.tag,
      kc: e.keyCommitment,
      wk,
    },
    ...(input.cse ? { cse: { kid: input.cse.kid } } : {}),
  };
}

/** What `GET /v1/transactions/{id}` serves of a transaction (besides its log position). */
export interface TransactionServedView {
  transactionId: string;
  processor: string;
  amount: { value: number; currency: string };
  paymentMethod: Record<string, unknown>;
  fingerprint: string;
  metadata: Record<string, string> | null;
  createdAt: string;
  /** Present when the payment data arrived client-side encrypted. */
  clientSideEncryption?: { kid: string };
}

/** The served view, decoded from a v2 transaction leaf (the only source the service uses for v2). */
export function transactionViewFromLeaf(l: TransactionLeafV2): TransactionServedView {
  return {
    transactionId: l.id,
    processor: l.p,
    amount: { value: l.amt, currency: l.cur },
    paymentMethod: { ...l.pm },
    fingerprint: l.fp,
    metadata: l.md ? { ...l.md } : null,
    createdAt: new Date(l.time).toISOString(),
    ...(l.cse ? { clientSideEncryption: { kid: l.cse.kid } } : {}),
  };
}

/** The sealed record a v2 leaf carries (the wrapped key itself lives beside the log). */
export interface LeafEnvelope {
  version: number;
  key: KeyReference;
  salt: Buffer;
  iv: Buffer;
  ciphertext: Buffer;
  tag: Buffer;
  keyCommitment: Buffer;
  wrappedKeySha256: Buffer;
}

/** The sealed record a v2 leaf carries, in the shape `src/crypto/envelope.ts` opens. */
export function envelopeFromLeaf(l: TransactionLeafV2): LeafEnvelope {
  const b = (x: Uint8Array) => Buffer.from(x.buffer, x.byteOffset, x.byteLength);
  return {
    version: l.env.v,
    key: l.env.kms !== undefined ? { kmsKeyId: l.env.kms } : { epochId: l.env.ep! },
    salt: l.env.salt ? b(l.env.salt) : Buffer.alloc(0),
    iv: b(l.env.iv),
    ciphertext: b(l.env.ct),
    tag: b(l.env.tag),
    keyCommitment: b(l.env.kc),
    wrappedKeySha256: b(l.env.wk),
  };
}

