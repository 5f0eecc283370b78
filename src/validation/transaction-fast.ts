/**
 * The submission hot path through step 3 of `validateTransactionRequest` (issue 20): a body
 * checked against `transactionRequestSchema` by hand-written rules (the same constants and
 * patterns, imported from ./transaction-schema.ts and ./identifiers.ts) instead of zod's generic
 * parser, which cost more CPU per submission than any other validation step.
 *
 * Contract: {@link parseTransactionRequestFast} MUST return a value only for input
 * `transactionRequestSchema.safeParse` accepts, and then one deep-equal to zod's output (fresh
 * objects, keys in schema order). For ANY other input — every refusal, and anything it was not
 * written for (a card with a `cvc` member, a value `undefined`, an object that is not a plain
 * JSON object, a metadata key `constructor`/`prototype`) — it returns `undefined` and the caller
 * MUST run the zod schema, which then gives the verdict and the issues it always gave. So the
 * fast path never decides a refusal and never words an error: it only has to be right about
 * what it accepts, and test/transaction-fast.test.ts holds it to zod over valid bodies of every
 * payment-method type and their mutations at and around every bound.
 */
import { isValidBIC } from 'ibantools';
import { PROCESSOR_NAME_PATTERN, TRANSACTION_ID_MAX, TRANSACTION_ID_PATTERN } from './identifiers.js';
import {
  ACCOUNT_NUMBER,
  BIC,
  CURRENCY_SHAPE,
  FORBIDDEN_TEXT_CHARS,
  HOLDER_NAME_MAX_CODE_POINTS,
  METADATA_KEY,
  METADATA_KEY_MAX,
  METADATA_MAX_KEYS,
  METADATA_VALUE_MAX,
  RAW_IDENTIFIER_MAX,
  type PaymentMethod,
  type TransactionRequest,
} from './transaction-schema.js';

type Obj = Record<string, unknown>;

/** A plain object as JSON.parse makes it: Object.prototype, own enumerable string keys only. */
function isPlainObject(v: unknown): v is Obj {
  return v !== null && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype && Reflect.ownKeys(v).length === Object.keys(v).length;
}

/** A plain object with exactly the `required` keys plus some of `optional`, none `undefined`. */
function hasKeys(v: unknown, required: readonly string[], optional: readonly string[] = []): v is Obj {
  if (!isPlainObject(v)) return false;
  const keys = Object.keys(v);
  let found = 0;
  for (const k of keys) {
    if (required.includes(k)) found++;
    else if (!optional.includes(k)) return false;
    if ((v as Obj)[k] === undefined) return false;
  }
  return found === required.length;
}

const isString = (v: unknown): v is string => typeof v === 'string';

/** Code points of `s` as zod counts them for `.max()` (a surrogate pair is one, a lone surrogate one). */
function codePoints(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length - 1; i++) {
    if ((s.charCodeAt(i) & 0xfc00) === 0xd800 && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n--;
      i++;
    }
  }
  return n;
}
/** zod's `z.string().max(max)` (zod 4 measures strings in code points). */
const isStringMax = (v: unknown, max: number): v is string => isString(v) && (v.length <= max || codePoints(v) <= max);
/** zod's `z.int()` accepts safe integers only. */
const isIntIn = (v: unknown, min: number, max: number): v is number => Number.isSafeInteger(v) && (v as number) >= min && (v as number) <= max;

/** `holderName`: not empty, at most 140 code points, no forbidden character, not blank. */
function isHolderName(v: unknown): v is string {
  if (!isString(v) || v.length < 1) return false;
  if (v.length > HOLDER_NAME_MAX_CODE_POINTS && [...v].length > HOLDER_NAME_MAX_CODE_POINTS) return false;
  return !FORBIDDEN_TEXT_CHARS.test(v) && v.trim().length > 0;
}

const CARD_KEYS = ['type', 'pan', 'expiryMonth', 'expiryYear', 'holderName'] as const;
const BANK_KEYS = ['type', 'accountNumber', 'routingNumber', 'accountType', 'holderName'] as const;
const IBAN_KEYS = ['type', 'iban', 'holderName'] as const;
const IBAN_OPTIONAL = ['bic'] as const;

function paymentMethod(v: unknown): PaymentMethod | undefined {
  const type = v !== null && typeof v === 'object' ? (v as Obj).type : undefined;
  if (type === 'card') {
    if (!hasKeys(v, CARD_KEYS)) return undefined; // a `cvc` member: zod decides
    const { pan, expiryMonth, expiryYear, holderName } = v;
    if (!isStringMax(pan, RAW_IDENTIFIER_MAX) || !isIntIn(expiryMonth, 1, 12) || !isIntIn(expiryYear, 1000, 9999) || !isHolderName(holderName)) return undefined;
    return { type, pan, expiryMonth, expiryYear, holderName };
  }
  if (type === 'us_bank_account') {
    if (!hasKeys(v, BANK_KEYS)) return undefined;
    const { accountNumber, routingNumber, accountType, holderName } = v;
    if (!isString(accountNumber) || !ACCOUNT_NUMBER.test(accountNumber) || !isStringMax(routingNumber, RAW_IDENTIFIER_MAX)) return undefined;
    if ((accountType !== 'checking' && accountType !== 'savings') || !isHolderName(holderName)) return undefined;
    return { type, accountNumber, routingNumber, accountType, holderName };
  }
  if (type === 'iban') {
    if (!hasKeys(v, IBAN_KEYS, IBAN_OPTIONAL)) return undefined;
    const { iban, bic, holderName } = v;
    if (!isStringMax(iban, RAW_IDENTIFIER_MAX) || !isHolderName(holderName)) return undefined;
    if (bic !== undefined && !(isString(bic) && BIC.test(bic) && isValidBIC(bic))) return undefined;
    return { type, iban, ...(bic !== undefined ? { bic } : {}), holderName };
  }
  return undefined;
}

/** `metadata`: at most 20 keys of 1..64 characters (METADATA_KEY), values free text up to 256. */
function metadata(v: unknown): Record<string, string> | undefined {
  if (!isPlainObject(v)) return undefined;
  const keys = Object.keys(v);
  if (keys.length > METADATA_MAX_KEYS) return undefined;
  const out: Record<string, string> = {};
  for (const k of keys) {
    const value = v[k];
    if (k.length > METADATA_KEY_MAX || !METADATA_KEY.test(k) || k === 'constructor' || k === 'prototype') return undefined;
    if (!isStringMax(value, METADATA_VALUE_MAX) || FORBIDDEN_TEXT_CHARS.test(value)) return undefined;
    out[k] = value;
  }
  return out;
}

const REQUEST_KEYS = ['transactionId', 'processor', 'amount', 'paymentMethod'] as const;
const REQUEST_OPTIONAL = ['metadata'] as const;
const AMOUNT_KEYS = ['value', 'currency'] as const;

/**
 * `transactionRequestSchema`'s output for `raw` when the fast rules vouch for it, else undefined
 * (the caller then runs the schema). See the module doc.
 */
export function parseTransactionRequestFast(raw: unknown): TransactionRequest | undefined {
  if (!hasKeys(raw, REQUEST_KEYS, REQUEST_OPTIONAL)) return undefined;
  const { transactionId, processor, amount } = raw;
  if (!isString(transactionId) || transactionId.length > TRANSACTION_ID_MAX || !TRANSACTION_ID_PATTERN.test(transactionId)) return undefined;
  if (!isString(processor) || !PROCESSOR_NAME_PATTERN.test(processor)) return undefined;
  if (!hasKeys(amount, AMOUNT_KEYS)) return undefined;
  const { value, currency } = amount;
  if (!isIntIn(value, 1, Number.MAX_SAFE_INTEGER) || !isString(currency) || !CURRENCY_SHAPE.test(currency)) return undefined;
  const pm = paymentMethod(raw.paymentMethod);
  if (pm === undefined) return undefined;
  if (!Object.hasOwn(raw, 'metadata')) return { transactionId, processor, amount: { value, currency }, paymentMethod: pm };
  const md = metadata(raw.metadata);
  if (md === undefined) return undefined;
  return { transactionId, processor, amount: { value, currency }, paymentMethod: pm, metadata: md };
}
