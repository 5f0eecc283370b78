/**
 * Transaction leaf, formats v2 and v3: the entry IS the record. It carries the served view (masked
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
/**
 * Leaf format v3 (issue 17): every leaf written from now on carries `v` = 3. Only the
 * transaction kind changes shape: its masked payment method has no BIN and it carries no
 * fingerprint (served fields can no longer be correlated to reconstruct a PAN, PCI DSS 3.5.1),
 * and an envelope-v2 record commits to the SHA-256 of the epoch public key it was sealed to
 * (`env.epk`), which verify-log matches with the epoch's `epoch_created` leaf. The other kinds
 * keep their v2 fields; v3-only optional fields are marked in their schemas.
 */
export const LEAF_FORMAT_V3 = 3;
/** The version every new leaf is written with. */
export const LEAF_FORMAT_CURRENT = LEAF_FORMAT_V3;
/** `v` of a CBOR leaf kind whose shape is the same in v2 and v3. */
export const cborLeafVersion = z.union([z.literal(LEAF_FORMAT_V2), z.literal(LEAF_FORMAT_V3)]);
/** Upper bound on ciphertext carried in a leaf (the leaf as a whole is bounded by MAX_LEAF_BYTES). */
export const MAX_LEAF_CIPHERTEXT_BYTES = 8 * 1024;

const last4 = z.string().regex(/^\d{0,4}$/);
/** The masked payment method exactly as served (src/validation/masking.ts `maskedView`). */
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

/** Leaf format v3: the masked payment method without the BIN (brand, last four, expiry). */
const maskedPaymentMethodV3Schema = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('card'),
    brand: z.string().min(1).max(32),
    last4,
    expiryMonth: z.number().int().min(1).max(12),
    expiryYear: z.number().int().min(1000).max(9999),
  }),
  maskedPaymentMethodSchema.options[1],
  maskedPaymentMethodSchema.options[2],
]);
type MaskedPaymentMethodV3 = z.infer<typeof maskedPaymentMethodV3Schema>;

/**
 * `env`: the sealed record. Key reference: exactly one of `kms` (envelope v1, per-transaction
 * mode: the KMS key that wrapped the data key) or `ep` (envelope v2, hierarchical mode: the
 * epoch whose key wrapped it, e.g. `acme/2026-12`).
 */
const sealedEnvelopeFields = {
    v: z.number().int().min(1).max(255),
    kms: kmsKeyId.optional(),
    ep: epochId.optional(),
    salt: bytesUpTo(64).optional(),
    iv: bytesUpTo(32),
    ct: z.instanceof(Buffer).refine((b) => b.length <= MAX_LEAF_CIPHERTEXT_BYTES),
    tag: bytesUpTo(32),
    kc: digest32,
    wk: digest32,
};
const oneKeyReference = (e: { kms?: unknown; ep?: unknown }) => (e.kms === undefined) !== (e.ep === undefined);
const sealedEnvelopeSchema = z.strictObject(sealedEnvelopeFields).refine(oneKeyReference, { message: 'exactly one key reference (kms or ep)' });
/** v3: an epoch reference (`ep`) comes with `epk`, the SHA-256 of the epoch public key sealed to. */
const sealedEnvelopeV3Schema = z
  .strictObject({ ...sealedEnvelopeFields, epk: digest32.optional() })
  .refine(oneKeyReference, { message: 'exactly one key reference (kms or ep)' })
  .refine((e) => (e.ep === undefined) === (e.epk === undefined), { message: 'epk exactly when ep' });

/** The transaction fields every CBOR format shares. */
const transactionFields = {
  type: z.literal('transaction'),
  time: msTime,
  id,
  p: id,
  amt: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
  cur: z.string().regex(/^[A-Z]{3}$/),
  md: z.record(z.string().min(1).max(64), z.string().max(1024)).optional(),
  cse: z.strictObject({ kid: z.string().min(1).max(256) }).optional(),
};

export const transactionLeafV2Schema = z.strictObject({
  ...transactionFields,
  v: z.literal(LEAF_FORMAT_V2),
  pm: maskedPaymentMethodSchema,
  fp: z.string().min(1).max(128),
  env: sealedEnvelopeSchema,
});
export type TransactionLeafV2 = z.infer<typeof transactionLeafV2Schema>;

/** Leaf format v3 transaction: no BIN, no fingerprint; `env.epk` with an epoch reference. */
export const transactionLeafV3Schema = z.strictObject({
  ...transactionFields,
  v: z.literal(LEAF_FORMAT_V3),
  pm: maskedPaymentMethodV3Schema,
  env: sealedEnvelopeV3Schema,
});
export type TransactionLeafV3 = z.infer<typeof transactionLeafV3Schema>;
/** A transaction leaf in CBOR (format v2 or v3). */
export type TransactionLeafCbor = TransactionLeafV2 | TransactionLeafV3;

/** Key reference of a sealed record. */
export type KeyReference = { kmsKeyId: string } | { epochId: string };

export interface TransactionLeafInput {
  time: Date;
  transactionId: string;
  processor: string;
  amount: { value: number; currency: string };
  /** The masked view (`maskedView(paymentMethod)`); a BIN in it is never written (v3). */
  paymentMethod: MaskedPaymentMethodV3 | MaskedPaymentMethodV2;
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
    /** With an epoch key reference: SHA-256 of the epoch public key the record was sealed to. */
    epochPublicKeySha256?: Buffer;
  };
  /** Present when the payment data arrived client-side encrypted: the key id it was encrypted to. */
  cse?: { kid: string };
}

/** The masked payment method as leaf format v3 holds it: the BIN is dropped. */
export function maskedForLeaf(pm: MaskedPaymentMethodV3 | MaskedPaymentMethodV2): MaskedPaymentMethodV3 {
  if (pm.type !== 'card') return pm;
  const { bin: _bin, ...rest } = pm as MaskedPaymentMethodV2 & { type: 'card' };
  return rest;
}

/** Builds a transaction leaf in the current format, v3 (validated again by `encodeLeaf`). */
export function transactionLeaf(input: TransactionLeafInput): TransactionLeafV3 {
  const e = input.envelope;
  const wk = e.wrappedKeySha256 ?? (e.wrappedKey ? createHash('sha256').update(e.wrappedKey).digest() : undefined);
  if (wk === undefined) throw new Error('transactionLeaf: wrappedKey or wrappedKeySha256 required');
  const epochRef = 'epochId' in e.key;
  if (epochRef && e.epochPublicKeySha256 === undefined) throw new Error('transactionLeaf: an epoch reference needs epochPublicKeySha256');
  return {
    v: LEAF_FORMAT_V3,
    type: 'transaction',
    time: msOf(input.time),
    id: input.transactionId,
    p: input.processor,
    amt: input.amount.value,
    cur: input.amount.currency,
    pm: maskedForLeaf(input.paymentMethod),
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
      ...(epochRef ? { epk: e.epochPublicKeySha256! } : {}),
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
  /** v2 leaves only (v3 leaves carry no fingerprint). */
  fingerprint?: string;
  metadata: Record<string, string> | null;
  createdAt: string;
  /** Present when the payment data arrived client-side encrypted. */
  clientSideEncryption?: { kid: string };
}

/** The served view, decoded from a v2 or v3 transaction leaf (the only source the service uses for them). */
export function transactionViewFromLeaf(l: TransactionLeafCbor): TransactionServedView {
  return {
    transactionId: l.id,
    processor: l.p,
    amount: { value: l.amt, currency: l.cur },
    paymentMethod: { ...l.pm },
    ...(l.v === LEAF_FORMAT_V2 ? { fingerprint: l.fp } : {}),
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
  /** v3 with an epoch reference: SHA-256 of the epoch public key sealed to. */
  epochPublicKeySha256?: Buffer;
}

/** The sealed record a v2 or v3 leaf carries, in the shape `src/crypto/envelope.ts` opens. */
export function envelopeFromLeaf(l: TransactionLeafCbor): LeafEnvelope {
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
    ...('epk' in l.env && l.env.epk ? { epochPublicKeySha256: b(l.env.epk) } : {}),
  };
}

