/**
 * The shape of `POST /v1/transactions` bodies (contract v1) as strict zod schemas, plus the
 * client-side encrypted variant (`paymentMethod: { type: "encrypted", jwe }`).
 *
 * MUST: be strict (unknown keys refused) and bound every string before any specific check runs.
 * MUST: report custom issues with the constant codes of {@link ISSUE}; only keys of these
 *       schemas are ever reported verbatim in a path ({@link sanitizePath}).
 * MUST NOT: check checksums, brands or currencies (./payment-method.ts, ./currencies.ts) or
 *       copy input values into issues.
 */
import { isValidBIC } from 'ibantools';
import { z } from 'zod';
import { PROCESSOR_NAME_PATTERN, TRANSACTION_ID_MAX, TRANSACTION_ID_PATTERN } from './identifiers.js';
import { CVC_PATTERN } from './card-security-code.js';

export const HOLDER_NAME_MAX_CODE_POINTS = 140;
export const METADATA_MAX_KEYS = 20;
export const METADATA_KEY_MAX = 64;
export const METADATA_VALUE_MAX = 256;
/** Upper bound on raw PAN / routing / IBAN strings before the specific checks run. */
export const RAW_IDENTIFIER_MAX = 64;
/** At most this many schema issues are reported (a hostile body can produce thousands). */
export const MAX_REPORTED_ISSUES = 20;

// The patterns below are exported for ./transaction-fast.ts only (the same rules, not copies).
export const CURRENCY_SHAPE = /^[A-Z]{3}$/;
export const ACCOUNT_NUMBER = /^\d{4,17}$/;
export const METADATA_KEY = /^[A-Za-z0-9][A-Za-z0-9_.:-]*$/;
/** ISO 9362 BIC: 4 institution + 2 country letters, 2 location, optional 3 branch; upper case. */
export const BIC = /^[A-Z]{6}[A-Z0-9]{2}(?:[A-Z0-9]{3})?$/;
/** Control characters, line/paragraph separators and lone surrogates. */
export const FORBIDDEN_TEXT_CHARS = /[\p{Cc}\p{Zl}\p{Zp}\p{Cs}]/u;

/** Custom issue codes we add to zod's own (reported in `details.issues[].code`). */
export const ISSUE = {
  controlCharacter: 'control_character',
  blank: 'blank',
  tooManyKeys: 'too_many_keys',
  reservedKey: 'reserved_key',
  cardNumberInFreeText: 'card_number_in_free_text',
  ibanInFreeText: 'iban_in_free_text',
} as const;

function issue(code: string): { params: { paylog: string } } {
  return { params: { paylog: code } };
}

const freeText = (max: number) =>
  z
    .string()
    .max(max)
    .refine((s) => !FORBIDDEN_TEXT_CHARS.test(s), issue(ISSUE.controlCharacter));

/** 1..140 Unicode code points, not blank, no control characters (RTL, ZWJ, emoji are fine). */
const holderName = z
  .string()
  .min(1)
  .max(HOLDER_NAME_MAX_CODE_POINTS * 2) // UTF-16 bound, checked before counting code points
  .refine((s) => [...s].length <= HOLDER_NAME_MAX_CODE_POINTS, {
    params: { paylog: 'too_big' },
  })
  .refine((s) => !FORBIDDEN_TEXT_CHARS.test(s), issue(ISSUE.controlCharacter))
  .refine((s) => s.trim().length > 0, issue(ISSUE.blank));

const cardSchema = z.strictObject({
  type: z.literal('card'),
  pan: z.string().max(RAW_IDENTIFIER_MAX),
  expiryMonth: z.int().min(1).max(12),
  expiryYear: z.int().min(1000).max(9999),
  holderName,
  /**
   * The card security code: split off before validation (src/validation/card-security-code.ts),
   * so never part of a validated request, its record, leaf or MAC; described here for the
   * submission schema in OpenAPI and for the release answer of purpose `authorize`.
   */
  cvc: z.string().regex(CVC_PATTERN).optional(),
});

const usBankAccountSchema = z.strictObject({
  type: z.literal('us_bank_account'),
  accountNumber: z.string().regex(ACCOUNT_NUMBER),
  routingNumber: z.string().max(RAW_IDENTIFIER_MAX),
  accountType: z.enum(['checking', 'savings']),
  holderName,
});

const ibanSchema = z.strictObject({
  type: z.literal('iban'),
  iban: z.string().max(RAW_IDENTIFIER_MAX),
  bic: z
    .string()
    .regex(BIC)
    .refine((s) => isValidBIC(s))
    .optional(),
  holderName,
});

export const paymentMethodSchema = z.discriminatedUnion('type', [
  cardSchema,
  usBankAccountSchema,
  ibanSchema,
]);

const metadataSchema = z
  .record(
    z.string().min(1).max(METADATA_KEY_MAX).regex(METADATA_KEY),
    freeText(METADATA_VALUE_MAX),
  )
  .refine((m) => Object.keys(m).length <= METADATA_MAX_KEYS, issue(ISSUE.tooManyKeys));

export const transactionRequestSchema = z.strictObject({
  transactionId: z.string().min(1).max(TRANSACTION_ID_MAX).regex(TRANSACTION_ID_PATTERN),
  processor: z.string().regex(PROCESSOR_NAME_PATTERN),
  amount: z.strictObject({
    value: z.int().positive(),
    currency: z.string().regex(CURRENCY_SHAPE),
  }),
  paymentMethod: paymentMethodSchema,
  metadata: metadataSchema.optional(),
});

export type TransactionRequest = z.infer<typeof transactionRequestSchema>;
export type PaymentMethod = z.infer<typeof paymentMethodSchema>;
export type CardPaymentMethod = z.infer<typeof cardSchema>;
export type UsBankAccountPaymentMethod = z.infer<typeof usBankAccountSchema>;
export type IbanPaymentMethod = z.infer<typeof ibanSchema>;

// Client-side encrypted submissions (src/cse): `paymentMethod: { type: "encrypted", jwe }`

/** Upper bound on a JWE compact serialisation (a card or bank account encrypts to < 1 KiB). */
const JWE_COMPACT_MAX = 8 * 1024;
/** RFC 7516 §7.1: five base64url parts; ECDH-ES (direct key agreement) leaves the key part empty. */
const JWE_COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
export const ENCRYPTED_PAYMENT_METHOD_TYPE = 'encrypted';

const encryptedPaymentMethodSchema = z.strictObject({
  type: z.literal(ENCRYPTED_PAYMENT_METHOD_TYPE),
  jwe: z.string().min(1).max(JWE_COMPACT_MAX).regex(JWE_COMPACT),
});

/** The submission as sent, before decryption: the plaintext schema with an encrypted payment method. */
export const encryptedTransactionRequestSchema = transactionRequestSchema.extend({
  paymentMethod: encryptedPaymentMethodSchema,
});
export type EncryptedTransactionRequest = z.infer<typeof encryptedTransactionRequestSchema>;

/** Every key our schema defines: the only path segments ever reported verbatim. */
const SCHEMA_KEYS: ReadonlySet<string> = new Set([
  ...Object.keys(encryptedPaymentMethodSchema.shape),
  ...Object.keys(transactionRequestSchema.shape),
  ...Object.keys(transactionRequestSchema.shape.amount.shape),
  ...Object.keys(cardSchema.shape),
  ...Object.keys(usBankAccountSchema.shape),
  ...Object.keys(ibanSchema.shape),
]);

/** Dotted path with every segment that is not one of our schema keys replaced by `*`. */
export function sanitizePath(path: ReadonlyArray<PropertyKey>): string {
  return path.map((s) => (typeof s === 'string' && SCHEMA_KEYS.has(s) ? s : '*')).join('.');
}
