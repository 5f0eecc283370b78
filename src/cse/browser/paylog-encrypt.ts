/**
 * paylog-encrypt.js — the browser side of client-side encryption (built by `npm run build:cse`
 * into `dist/paylog-encrypt.js`, one ES module, no framework; also runs on Node ≥ 20, which has
 * the same WebCrypto).
 *
 * A checkout page gets paylog's JWK Set from its backend (which fetched `GET /v1/cse/jwks.json`
 * over mTLS), then:
 *
 * ```js
 * import { importPaylogKey, encryptPaymentMethod, cardFromForm } from '/paylog-encrypt.js';
 * const key = await importPaylogKey(jwks);
 * const jwe = await encryptPaymentMethod(key, cardFromForm(document), { transactionId, processor });
 * // send { transactionId, ..., paymentMethod: { type: 'encrypted', jwe } } to the backend
 * ```
 *
 * The JWE (compact, `ECDH-ES` + `A256GCM`) binds `transactionId`, `processor` and `iat` in its
 * protected header; paylog refuses it for any other transaction or processor, and after
 * `PAYLOG_CSE_MAX_AGE_S` (default 15 min) on paylog's clock. Format: src/cse/jwe.ts.
 *
 * This module does not validate card data (paylog does, after decryption, exactly as for a
 * plaintext submission); it only removes the spaces and hyphens people type into card numbers.
 */
import { CompactEncrypt, importJWK, type JWK } from 'jose';

export const ALG = 'ECDH-ES';
export const ENC = 'A256GCM';

export interface PaylogKey {
  readonly kid: string;
  readonly key: Awaited<ReturnType<typeof importJWK>>;
}

export interface Binding {
  transactionId: string;
  processor: string;
}

/** `cvc` (3–4 digits) travels only inside the JWE; paylog holds it until authorization (issue 18). */
export type CardPaymentMethod = { type: 'card'; pan: string; expiryMonth: number; expiryYear: number; holderName: string; cvc?: string };
export type UsBankAccountPaymentMethod = {
  type: 'us_bank_account';
  accountNumber: string;
  routingNumber: string;
  accountType: 'checking' | 'savings';
  holderName: string;
};
export type IbanPaymentMethod = { type: 'iban'; iban: string; bic?: string; holderName: string };
export type PaymentMethod = CardPaymentMethod | UsBankAccountPaymentMethod | IbanPaymentMethod;

/** Picks the first ECDH-ES encryption key of a paylog JWK Set and imports it. */
export async function importPaylogKey(jwks: { keys: ReadonlyArray<Record<string, unknown>> }): Promise<PaylogKey> {
  const jwk = jwks.keys.find((k) => k['kty'] === 'EC' && k['crv'] === 'P-256' && k['alg'] === ALG && k['use'] === 'enc' && typeof k['kid'] === 'string');
  if (jwk === undefined) throw new Error('paylog JWK Set has no ECDH-ES P-256 encryption key');
  const { kty, crv, x, y } = jwk as { kty: string; crv: string; x: string; y: string };
  return { kid: jwk['kid'] as string, key: await importJWK({ kty, crv, x, y } as JWK, ALG) };
}

/**
 * Encrypts one payment method for one checkout. `issuedAt` (seconds) defaults to this
 * device's clock; a backend that knows the device clock is off may pass its own time.
 */
export async function encryptPaymentMethod(
  key: PaylogKey,
  paymentMethod: PaymentMethod,
  binding: Binding,
  opts: { issuedAt?: number } = {},
): Promise<string> {
  const iat = opts.issuedAt ?? Math.floor(Date.now() / 1000);
  const plaintext = new TextEncoder().encode(JSON.stringify(paymentMethod));
  try {
    return await new CompactEncrypt(plaintext)
      .setProtectedHeader({
        alg: ALG,
        enc: ENC,
        kid: key.kid,
        transactionId: binding.transactionId,
        processor: binding.processor,
        iat,
      })
      .encrypt(key.key);
  } finally {
    plaintext.fill(0);
  }
}

/** What `cardFromForm` needs of a document (so this module needs no DOM typings). */
export interface FormRoot {
  querySelector(selector: string): { value: string } | null;
}

export const DEFAULT_CARD_FIELDS = {
  pan: '#pan',
  expiryMonth: '#exp-month',
  expiryYear: '#exp-year',
  holderName: '#holder',
  cvc: '#cvc',
} as const;

/**
 * Reads a card form (default ids `#pan #exp-month #exp-year #holder`, and `#cvc` when the form
 * has one and it is filled in: the card security code goes only into the JWE).
 */
export function cardFromForm(
  root: FormRoot,
  fields: { pan: string; expiryMonth: string; expiryYear: string; holderName: string; cvc?: string } = DEFAULT_CARD_FIELDS,
): CardPaymentMethod {
  const value = (sel: string) => {
    const el = root.querySelector(sel);
    if (el === null) throw new Error(`card form field ${sel} not found`);
    return el.value;
  };
  const cvc = fields.cvc !== undefined ? (root.querySelector(fields.cvc)?.value ?? '').trim() : '';
  return {
    type: 'card',
    pan: value(fields.pan).replace(/[\s-]/g, ''),
    expiryMonth: Number.parseInt(value(fields.expiryMonth), 10),
    expiryYear: Number.parseInt(value(fields.expiryYear), 10),
    holderName: value(fields.holderName).trim(),
    ...(cvc !== '' ? { cvc } : {}),
  };
}

/** Reads a US bank-account form (ids `#account-number #routing-number #account-type #holder` by default). */
export function usBankAccountFromForm(
  root: FormRoot,
  fields = { accountNumber: '#account-number', routingNumber: '#routing-number', accountType: '#account-type', holderName: '#holder' },
): UsBankAccountPaymentMethod {
  const value = (sel: string) => {
    const el = root.querySelector(sel);
    if (el === null) throw new Error(`bank account form field ${sel} not found`);
    return el.value;
  };
  return {
    type: 'us_bank_account',
    accountNumber: value(fields.accountNumber).replace(/[\s-]/g, ''),
    routingNumber: value(fields.routingNumber).replace(/[\s-]/g, ''),
    accountType: value(fields.accountType) === 'savings' ? 'savings' : 'checking',
    holderName: value(fields.holderName).trim(),
  };
}
