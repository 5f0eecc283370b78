/**
 * Validation of `POST /v1/transactions` bodies (contract v1).
 *
 * `validateTransactionRequest(raw, now)` runs, in this order, and throws a `PaylogError` with a
 * stable code at the first failing step:
 * 1. SAD keys anywhere (`sensitive.ts`)            → SENSITIVE_AUTHENTICATION_DATA
 * 2. `__proto__` / `constructor` / `prototype` keys anywhere → VALIDATION_FAILED (`reserved_key`)
 * 3. schema (`transactionRequestSchema`, strict)   → VALIDATION_FAILED
 *    (`transaction-fast.ts` accepts the usual body without zod; it never refuses: zod does)
 * 4. a Luhn-valid 13–19 digit run in clear-text fields (transactionId and processor, which
 *    also go into the KMS encryption context; metadata keys and values)
 *                                                  → VALIDATION_FAILED (`card_number_in_free_text`)
 * 5. currency not in the ISO 4217 table            → UNSUPPORTED_CURRENCY
 * (1 and 2 are answered by one walk over the body, with the verdict of two walks in that order.)
 * 6. card: digits only, length/brand/Luhn (card-validator's verdict) → INVALID_CARD_NUMBER;
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
 *
 * MUST: run the steps in the order above and throw only PaylogError.
 * MUST NOT: copy an input value into an error or report a path segment that is not a schema key.
 */
import type { z } from 'zod';
import { PaylogError, isPaylogError } from '../errors.js';
import { isSupportedCurrency } from './currencies.js';
import { containsPanLikeIdentifier, containsPanLikeNumber } from './identifiers.js';
import { CHECK_MESSAGES, issueMessage, summaryMessage } from './messages.js';
import { checkPaymentMethod, containsIban } from './payment-method.js';
import { classifySensitiveKey, findKeysDeep } from './sensitive.js';
import { parseTransactionRequestFast } from './transaction-fast.js';
import {
  encryptedTransactionRequestSchema,
  ENCRYPTED_PAYMENT_METHOD_TYPE,
  ISSUE,
  MAX_REPORTED_ISSUES,
  sanitizePath,
  transactionRequestSchema,
  type EncryptedTransactionRequest,
  type TransactionRequest,
} from './transaction-schema.js';

// The identifier patterns and the PAN detector live in ./identifiers.ts (one rule, one place),
// the schemas in ./transaction-schema.ts, the payment-method checks in ./payment-method.ts.
export { containsPanLikeIdentifier, containsPanLikeNumber, luhnValid, TRANSACTION_ID_MAX } from './identifiers.js';
export { cardBrandOf, containsIban, detectCardBrand, isValidRoutingNumber } from './payment-method.js';
export {
  encryptedTransactionRequestSchema,
  paymentMethodSchema,
  sanitizePath,
  transactionRequestSchema,
  type PaymentMethod,
  type TransactionRequest,
} from './transaction-schema.js';

const RESERVED_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

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
// Steps of validateTransactionRequest (module doc order)

const reservedKey = (k: string): string | null => (RESERVED_KEYS.has(k) ? k : null);

// Steps 1 and 2, in one walk over the body (findKeysDeep: the verdict of step 1, else of step 2,
// exactly as two walks in that order).
// Step 1: PCI DSS 3.3.1 — refuse SAD before anything else looks at the body.
// Step 2: keys that could alter prototypes in naive consumers are refused outright.
function rejectSensitiveAndReservedKeys(raw: unknown): void {
  const hit = findKeysDeep(raw, classifySensitiveKey, reservedKey);
  if (hit.primary !== null) {
    throw new PaylogError(
      'SENSITIVE_AUTHENTICATION_DATA',
      'Sensitive authentication data (card verification code, track data or PIN) is not accepted',
      { path: sanitizePath(hit.primary.path), field: hit.primary.term },
    );
  }
  if (hit.secondary !== null) {
    throw validationFailed([{ path: sanitizePath(hit.secondary.path), code: ISSUE.reservedKey }]);
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

/**
 * Validates an untrusted, JSON-parsed request body (see the module doc for order and codes).
 * Always throws PaylogError, never another error type; never echoes input values.
 */
export function validateTransactionRequest(raw: unknown, now: Date = new Date()): TransactionRequest {
  try {
    rejectSensitiveAndReservedKeys(raw);
    // The hand-written rules vouch for the usual body; anything else gets zod's verdict.
    const req = parseTransactionRequestFast(raw) ?? parseSchema(raw, transactionRequestSchema);
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
    rejectSensitiveAndReservedKeys(raw);
    const req = parseSchema(raw, encryptedTransactionRequestSchema);
    rejectPanInFreeText(req);
    checkCurrency(req);
    return req;
  } catch (e) {
    if (isPaylogError(e)) throw e;
    throw new PaylogError('VALIDATION_FAILED', 'Request body could not be validated');
  }
}
