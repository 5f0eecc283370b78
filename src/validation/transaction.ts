/**
 * Validation of `POST /v1/transactions` bodies (contract v1).
 *
 * `validateTransactionRequest(raw, now)` runs, in this order, and throws a `PaylogError` with a
 * stable code at the first failing step:
 * 1. SAD keys anywhere (`sensitive.ts`)            → SENSITIVE_AUTHENTICATION_DATA
 * 2. `__proto__` / `constructor` / `prototype` keys anywhere → VALIDATION_FAILED (`reserved_key`)
 * 3. schema (`transactionRequestSchema`, strict)   → VALIDATION_FAILED
 * 4. a Luhn-valid 13–19 digit run in clear-text fields (transactionId and processor, which
 *    also go into the KMS encryption context; metadata keys and values)
 *                                                  → VALIDATION_FAILED (`card_number_in_free_text`)
 * 5. currency not in the ISO 4217 table            → UNSUPPORTED_CURRENCY
 * 6. card: digits only, length/brand/Luhn via card-validator → INVALID_CARD_NUMBER;
 *    expiry month ended (UTC)                      → CARD_EXPIRED
 *    us_bank_account: 9 digits + ABA 3-7-1 check   → INVALID_ROUTING_NUMBER
 *    iban: ibantools (electronic format, BBAN format, ISO 7064 mod 97-10) → INVALID_IBAN
 *
 * Error hygiene: messages are constants written here (zod's messages are never used) and
 * `details` hold only field paths and constant codes. Path segments that are not keys of our
 * schema (an attacker may send a PAN as a key) are replaced by `*`. No input value is ever
 * copied into an error, and a non-PaylogError thrown while looking at hostile input is turned
 * into VALIDATION_FAILED without a cause.
 *
 * Normalisation: an IBAN is returned in electronic format (spaces/hyphens removed, upper
 * case); optional members given as `undefined` are omitted (so the result is always accepted by
 * `canonicalJson`); everything else is returned exactly as parsed.
 */
import { z } from 'zod';
import cardValidator from 'card-validator';
import { electronicFormatIBAN, isValidBIC, isValidIBAN } from 'ibantools';
import { PaylogError, isPaylogError } from '../errors.js';
import { isSupportedCurrency } from './currencies.js';
import { findKeyDeep, findSensitiveAuthenticationData } from './sensitive.js';
import { CHECK_MESSAGES, issueMessage, summaryMessage } from './messages.js';
import {
  containsPanLikeIdentifier,
  containsPanLikeNumber,
  luhnValid,
  PROCESSOR_NAME_PATTERN,
  TRANSACTION_ID_MAX,
  TRANSACTION_ID_PATTERN,
} from './identifiers.js';

// The identifier patterns and the PAN detector live in ./identifiers.ts (one rule, one place).
export { containsPanLikeIdentifier, containsPanLikeNumber, luhnValid, TRANSACTION_ID_MAX };
export const HOLDER_NAME_MAX_CODE_POINTS = 140;
export const METADATA_MAX_KEYS = 20;
export const METADATA_KEY_MAX = 64;
export const METADATA_VALUE_MAX = 256;
/** Upper bound on raw PAN / routing / IBAN strings before the specific checks run. */
export const RAW_IDENTIFIER_MAX = 64;
/** At most this many schema issues are reported (a hostile body can produce thousands). */
export const MAX_REPORTED_ISSUES = 20;

const CURRENCY_SHAPE = /^[A-Z]{3}$/;
const ACCOUNT_NUMBER = /^\d{4,17}$/;
const METADATA_KEY = /^[A-Za-z0-9][A-Za-z0-9_.:-]*$/;
/** ISO 9362 BIC: 4 institution + 2 country letters, 2 location, optional 3 branch; upper case. */
const BIC = /^[A-Z]{6}[A-Z0-9]{2}(?:[A-Z0-9]{3})?$/;
/** Control characters, line/paragraph separators and lone surrogates. */
const FORBIDDEN_TEXT_CHARS = /[\p{Cc}\p{Zl}\p{Zp}\p{Cs}]/u;
const RESERVED_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

/** Custom issue codes we add to zod's own (reported in `details.issues[].code`). */
const ISSUE = {
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

export const cardSchema = z.strictObject({
  type: z.literal('card'),
  pan: z.string().max(RAW_IDENTIFIER_MAX),
  expiryMonth: z.int().min(1).max(12),
  expiryYear: z.int().min(1000).max(9999),
  holderName,
});

export const usBankAccountSchema = z.strictObject({
  type: z.literal('us_bank_account'),
  accountNumber: z.string().regex(ACCOUNT_NUMBER),
  routingNumber: z.string().max(RAW_IDENTIFIER_MAX),
  accountType: z.enum(['checking', 'savings']),
  holderName,
});

export const ibanSchema = z.strictObject({
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

export const metadataSchema = z
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

// ---------------------------------------------------------------------------------------------
// Client-side encrypted submissions (src/cse): `paymentMethod: { type: "encrypted", jwe }`

/** Upper bound on a JWE compact serialisation (a card or bank account encrypts to < 1 KiB). */
export const JWE_COMPACT_MAX = 8 * 1024;
/** RFC 7516 §7.1: five base64url parts; ECDH-ES (direct key agreement) leaves the key part empty. */
const JWE_COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
export const ENCRYPTED_PAYMENT_METHOD_TYPE = 'encrypted';

export const encryptedPaymentMethodSchema = z.strictObject({
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

/** VALIDATION_FAILED whose message and per-issue messages say what each field must be. */
function validationFailed(issues: Array<{ path: string; code: string; missing?: boolean }>): PaylogError {
  const seen = new Set<string>();
  const worded = issues
    .filter((i) => !seen.has(i.path) && seen.add(i.path)) // one issue per field: the first
    .map(({ path, code, missing }) => ({ path, code, message: issueMessage(path, code, missing === true) }));
  return new PaylogError('VALIDATION_FAILED', summaryMessage(worded), { issues: worded });
}

/** True when `raw` has nothing at `path` (the field is absent, not malformed). Reads only. */
function isAbsent(raw: unknown, path: ReadonlyArray<PropertyKey>): boolean {
  let v: unknown = raw;
  for (const seg of path) {
    if (v === null || typeof v !== 'object' || !Object.hasOwn(v, seg)) return true;
    v = (v as Record<PropertyKey, unknown>)[seg];
  }
  return v === undefined;
}

// ---------------------------------------------------------------------------------------------
// Card numbers

/** Brand as detected by card-validator (credit-card-type ids, e.g. `visa`, `american-express`). */
export interface CardBrand {
  /** credit-card-type id, e.g. `visa`, `mastercard`, `american-express`, `diners-club`. */
  id: string;
  /** Display name, e.g. `Visa`, `American Express`. */
  name: string;
}

/** The one brand card-validator attributes to `pan` (digits only), or null if none/ambiguous. */
export function detectCardBrand(pan: string): CardBrand | null {
  if (!/^\d+$/.test(pan)) return null;
  return brandOf(cardValidator.number(pan).card);
}

function brandOf(card: { type: string; niceType: string } | null): CardBrand | null {
  return card === null ? null : { id: card.type, name: card.niceType };
}

/**
 * The brand of a validated card, found by validation itself (one card-validator pass per
 * request instead of two). Keyed by the payment-method object: nothing outlives the request's
 * own objects, and no PAN is kept anywhere else.
 */
const validatedBrands = new WeakMap<object, CardBrand | null>();

/** The brand of a card payment method: the one validation found for this object, else detected now. */
export function cardBrandOf(pm: { pan: string }): CardBrand | null {
  const known = validatedBrands.get(pm);
  return known !== undefined ? known : detectCardBrand(pm.pan);
}

const PAN_SHAPE = /^\d{12,19}$/;

/** PAN check: ASCII digits only (no spaces), 12..19 long, one known brand, its length and Luhn. */
export function isValidPan(pan: string): boolean {
  return PAN_SHAPE.test(pan) && cardValidator.number(pan).isValid;
}

/** A card is valid through the last instant of its expiry month (UTC). */
export function isCardExpired(expiryMonth: number, expiryYear: number, now: Date): boolean {
  return now.getTime() >= Date.UTC(expiryYear, expiryMonth, 1); // month index = next month
}

/** Candidate IBANs in free text: country code, check digits, 11–30 alphanumerics (spaces allowed). */
const IBAN_CANDIDATE = /[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}/g;

/** True when `text` contains a checksum-valid IBAN (ISO 13616), grouped or not. */
export function containsIban(text: string): boolean {
  for (const m of text.normalize('NFKC').toUpperCase().matchAll(IBAN_CANDIDATE)) {
    const compact = m[0].replace(/ /g, '');
    // Try every length from the longest: a valid IBAN may be followed by other characters.
    for (let len = compact.length; len >= 15; len--) if (isValidIBAN(compact.slice(0, len))) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Bank identifiers

// ABA routing number check digit: 3·(d1+d4+d7) + 7·(d2+d5+d8) + 1·(d3+d6+d9) ≡ 0 (mod 10).
export function isValidRoutingNumber(routingNumber: string): boolean {
  if (!/^\d{9}$/.test(routingNumber)) return false;
  const weights = [3, 7, 1, 3, 7, 1, 3, 7, 1];
  let sum = 0;
  for (let i = 0; i < 9; i++) sum += (routingNumber.charCodeAt(i) - 48) * weights[i]!;
  return sum % 10 === 0;
}

/** Electronic-format IBAN if valid (ISO 13616 structure + mod 97-10 checksum), else null. */
export function normalizeIban(iban: string): string | null {
  const electronic = electronicFormatIBAN(iban);
  if (electronic === null || !/^[A-Z]{2}\d{2}[A-Z0-9]{1,30}$/.test(electronic)) return null;
  return isValidIBAN(electronic) ? electronic : null;
}

// ---------------------------------------------------------------------------------------------
// Steps of validateTransactionRequest (module doc order)

// Step 1: PCI DSS 3.3.1 — refuse SAD before anything else looks at the body.
function rejectSensitiveAuthenticationData(raw: unknown): void {
  const hit = findSensitiveAuthenticationData(raw);
  if (hit !== null) {
    throw new PaylogError(
      'SENSITIVE_AUTHENTICATION_DATA',
      'Sensitive authentication data (card verification code, track data or PIN) is not accepted',
      { path: sanitizePath(hit.path), field: hit.term },
    );
  }
}

// Step 2: keys that could alter prototypes in naive consumers are refused outright.
function rejectReservedKeys(raw: unknown): void {
  const hit = findKeyDeep(raw, (k) => (RESERVED_KEYS.has(k) ? k : null));
  if (hit !== null) {
    throw validationFailed([{ path: sanitizePath(hit.path), code: ISSUE.reservedKey }]);
  }
}

// Step 3: the contract's shape (strict objects).
function parseSchema<S extends z.ZodType>(raw: unknown, schema: S): z.infer<S> {
  const result = schema.safeParse(raw);
  if (result.success) return result.data;
  const issues = result.error.issues.slice(0, MAX_REPORTED_ISSUES).map((i) => {
    const custom =
      i.code === 'custom' && typeof i.params?.['paylog'] === 'string'
        ? (i.params['paylog'] as string)
        : undefined;
    return { path: sanitizePath(i.path), code: custom ?? i.code, missing: i.code === 'invalid_type' && isAbsent(raw, i.path) };
  });
  throw validationFailed(issues);
}

// Step 4: no PAN smuggled into fields that are stored or logged in the clear.
function rejectPanInFreeText(req: Pick<TransactionRequest, 'transactionId' | 'processor' | 'metadata'>): void {
  const hits: Array<{ path: string; code: string }> = [];
  for (const field of ['transactionId', 'processor'] as const) {
    if (containsPanLikeIdentifier(req[field])) {
      hits.push({ path: field, code: ISSUE.cardNumberInFreeText });
    }
  }
  for (const [key, value] of Object.entries(req.metadata ?? {})) {
    if (containsPanLikeNumber(key) || containsPanLikeNumber(value)) {
      hits.push({ path: 'metadata.*', code: ISSUE.cardNumberInFreeText });
    } else if (containsIban(value)) {
      hits.push({ path: 'metadata.*', code: ISSUE.ibanInFreeText });
    }
  }
  if (hits.length > 0) throw validationFailed(hits.slice(0, MAX_REPORTED_ISSUES));
}

// Step 5: ISO 4217 active codes only.
function checkCurrency(req: Pick<TransactionRequest, 'amount'>): void {
  if (!isSupportedCurrency(req.amount.currency)) {
    throw new PaylogError('UNSUPPORTED_CURRENCY', CHECK_MESSAGES.UNSUPPORTED_CURRENCY, {
      path: 'amount.currency',
    });
  }
}

// Step 6: payment-method specific checks; returns the normalised payment method.
function checkPaymentMethod(pm: PaymentMethod, now: Date): PaymentMethod {
  switch (pm.type) {
    case 'card': {
      // The isValidPan rule, with card-validator's verdict kept for the brand.
      const verdict = PAN_SHAPE.test(pm.pan) ? cardValidator.number(pm.pan) : null;
      if (!verdict?.isValid) {
        throw new PaylogError('INVALID_CARD_NUMBER', CHECK_MESSAGES.INVALID_CARD_NUMBER, {
          path: 'paymentMethod.pan',
        });
      }
      validatedBrands.set(pm, brandOf(verdict.card));
      if (isCardExpired(pm.expiryMonth, pm.expiryYear, now)) {
        // The field at fault: the year when it is past, else the month of this year.
        const yearPast = pm.expiryYear < now.getUTCFullYear();
        throw new PaylogError('CARD_EXPIRED', yearPast ? CHECK_MESSAGES.CARD_EXPIRED_YEAR : CHECK_MESSAGES.CARD_EXPIRED_MONTH, {
          path: yearPast ? 'paymentMethod.expiryYear' : 'paymentMethod.expiryMonth',
        });
      }
      return pm;
    }
    case 'us_bank_account':
      if (!isValidRoutingNumber(pm.routingNumber)) {
        throw new PaylogError('INVALID_ROUTING_NUMBER', CHECK_MESSAGES.INVALID_ROUTING_NUMBER, {
          path: 'paymentMethod.routingNumber',
        });
      }
      return pm;
    case 'iban': {
      const iban = normalizeIban(pm.iban);
      if (iban === null) {
        throw new PaylogError('INVALID_IBAN', CHECK_MESSAGES.INVALID_IBAN, { path: 'paymentMethod.iban' });
      }
      const { bic, ...rest } = pm; // an explicit `bic: undefined` is dropped (canonical JSON)
      return { ...rest, iban, ...(bic !== undefined ? { bic } : {}) };
    }
  }
}

/**
 * Validates an untrusted, JSON-parsed request body (see the module doc for order and codes).
 * Always throws PaylogError, never another error type; never echoes input values.
 */
export function validateTransactionRequest(raw: unknown, now: Date = new Date()): TransactionRequest {
  try {
    rejectSensitiveAuthenticationData(raw);
    rejectReservedKeys(raw);
    const req = parseSchema(raw, transactionRequestSchema);
    rejectPanInFreeText(req);
    checkCurrency(req);
    const { metadata, ...rest } = req; // an explicit `metadata: undefined` is dropped
    return {
      ...rest,
      paymentMethod: checkPaymentMethod(req.paymentMethod, now),
      ...(metadata !== undefined ? { metadata } : {}),
    };
  } catch (e) {
    if (isPaylogError(e)) throw e;
    throw new PaylogError('VALIDATION_FAILED', 'Request body could not be validated');
  }
}

/** True when `raw` is a submission whose payment method is client-side encrypted (a JWE). */
export function isEncryptedSubmission(raw: unknown): boolean {
  const pm = (raw as { paymentMethod?: unknown } | null)?.paymentMethod;
  return typeof pm === 'object' && pm !== null && (pm as { type?: unknown }).type === ENCRYPTED_PAYMENT_METHOD_TYPE;
}

/**
 * Steps 1–5 of `validateTransactionRequest` over an encrypted submission as sent (the JWE is
 * checked for shape only). Runs BEFORE decryption so malformed bodies cost no cryptography;
 * after decryption the caller runs `validateTransactionRequest` over the plaintext body, so an
 * encrypted submission passes exactly the same checks as a plaintext one.
 */
export function validateEncryptedTransactionRequest(raw: unknown): EncryptedTransactionRequest {
  try {
    rejectSensitiveAuthenticationData(raw);
    rejectReservedKeys(raw);
    const req = parseSchema(raw, encryptedTransactionRequestSchema);
    rejectPanInFreeText(req);
    checkCurrency(req);
    return req;
  } catch (e) {
    if (isPaylogError(e)) throw e;
    throw new PaylogError('VALIDATION_FAILED', 'Request body could not be validated');
  }
}
