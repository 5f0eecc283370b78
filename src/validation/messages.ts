/**
 * What each field of a `POST /v1/transactions` body must be, in words, for error messages.
 *
 * Contract: every message is a constant written here. No input value (nor any part of one,
 * nor an attacker-chosen key) is ever placed in a message; paths come from `sanitizePath`.
 */

/** Expected value of each field, keyed by the sanitised dotted path (`*` = any key). */
export const FIELD_EXPECTATIONS: Readonly<Record<string, string>> = {
  '': 'the body must be a JSON object with transactionId, processor, amount, paymentMethod and optionally metadata',
  transactionId:
    'transactionId must be 1-64 characters of letters, digits and . _ : -, starting with a letter or digit, e.g. ord-2026-000123',
  processor: 'processor must be the name of a registered processor: lower-case letters, digits and -, e.g. acme',
  amount: 'amount must be an object { "value": <minor units>, "currency": "<ISO 4217 code>" }',
  'amount.value': 'amount.value must be a positive integer number of minor units, e.g. 1999 for 19.99 USD',
  'amount.currency': 'amount.currency must be a three-letter ISO 4217 code in upper case, e.g. USD',
  paymentMethod: 'paymentMethod must be an object whose type is card, us_bank_account or iban',
  'paymentMethod.type': 'paymentMethod.type must be one of card, us_bank_account, iban',
  'paymentMethod.pan': 'paymentMethod.pan must be the card number as 12-19 digits without spaces or separators',
  'paymentMethod.expiryMonth': 'paymentMethod.expiryMonth must be an integer from 1 to 12',
  'paymentMethod.expiryYear': 'paymentMethod.expiryYear must be the four-digit year, e.g. 2030',
  'paymentMethod.holderName':
    'paymentMethod.holderName must be 1-140 characters, not blank, without control characters or line breaks',
  'paymentMethod.accountNumber': 'paymentMethod.accountNumber must be 4-17 digits',
  'paymentMethod.routingNumber': 'paymentMethod.routingNumber must be the 9-digit ABA routing number',
  'paymentMethod.accountType': 'paymentMethod.accountType must be checking or savings',
  'paymentMethod.iban': 'paymentMethod.iban must be an IBAN: country code, 2 check digits and the account number, at most 34 characters (spaces allowed)',
  'paymentMethod.bic': 'paymentMethod.bic must be an 8- or 11-character BIC in upper case, e.g. DEUTDEFF',
  metadata: 'metadata must be an object of at most 20 string values',
  'metadata.*':
    'metadata keys must be 1-64 characters of letters, digits and _ . : -; values strings of at most 256 characters without control characters',
};

/** Messages for our own issue codes (they say what is wrong, not only what was expected). */
const CODE_MESSAGES: Readonly<Record<string, (path: string) => string>> = {
  unrecognized_keys: (p) =>
    `${p === '' ? 'the body' : p} has a field that is not part of the contract; allowed: ${ALLOWED_KEYS[p] ?? 'see the API reference'}`,
  reserved_key: () => 'keys named __proto__, constructor or prototype are not accepted anywhere in the body',
  card_number_in_free_text: (p) =>
    `${p} must not contain a card number (a 13-19 digit run that passes the Luhn check); card data goes only in paymentMethod`,
  iban_in_free_text: (p) => `${p} must not contain an IBAN; account data goes only in paymentMethod`,
  too_many_keys: () => 'metadata must have at most 20 keys',
  control_character: (p) => `${p} must not contain control characters, line or paragraph separators`,
  blank: (p) => `${p} must not be blank`,
};

const ALLOWED_KEYS: Readonly<Record<string, string>> = {
  '': 'transactionId, processor, amount, paymentMethod, metadata',
  amount: 'value, currency',
  paymentMethod:
    'for card: type, pan, expiryMonth, expiryYear, holderName; for us_bank_account: type, accountNumber, routingNumber, accountType, holderName; for iban: type, iban, bic, holderName',
};

/** The expectation for a sanitised path: exact, else the nearest documented parent. */
function expectationFor(path: string): string {
  for (let p = path; ; p = p.includes('.') ? p.slice(0, p.lastIndexOf('.')) : '') {
    const m = FIELD_EXPECTATIONS[p] ?? FIELD_EXPECTATIONS[p.replace(/\.[^.]+$/, '.*')];
    if (m !== undefined) return m;
    if (p === '') return FIELD_EXPECTATIONS['']!;
  }
}

/**
 * The message of one issue: `missing` (the field is absent) → "<path> is required: …"; our own
 * codes → their message; anything else → what the field must be.
 */
export function issueMessage(path: string, code: string, missing: boolean): string {
  if (missing) return `${path} is required: ${expectationFor(path)}`;
  const own = CODE_MESSAGES[code];
  return own ? own(path) : expectationFor(path);
}

/** The top-level message: the first issue's, and how many more there are. */
export function summaryMessage(issues: ReadonlyArray<{ message: string }>): string {
  const first = issues[0]?.message ?? FIELD_EXPECTATIONS['']!;
  return issues.length > 1 ? `${first} (and ${issues.length - 1} more problem${issues.length > 2 ? 's' : ''} in details.issues)` : first;
}

/** Messages of the checks after the schema (stable codes unchanged). */
export const CHECK_MESSAGES = {
  INVALID_CARD_NUMBER:
    'paymentMethod.pan is not a valid card number: it must be 12-19 digits of a known card brand, of that brand\'s length, with a correct Luhn check digit',
  CARD_EXPIRED_MONTH: 'the card has expired: paymentMethod.expiryMonth is before the current month (UTC) of this year',
  CARD_EXPIRED_YEAR: 'the card has expired: paymentMethod.expiryYear is before the current year (UTC)',
  INVALID_ROUTING_NUMBER: 'paymentMethod.routingNumber is not a valid ABA routing number: 9 digits with a correct 3-7-1 check digit',
  INVALID_IBAN:
    'paymentMethod.iban is not a valid IBAN: country code, 2 check digits and the national account number (ISO 13616), with a correct mod 97-10 check',
  UNSUPPORTED_CURRENCY:
    'amount.currency must be an active ISO 4217 code that has minor units, e.g. USD, EUR, JPY (not XAU, XXX or a withdrawn code)',
} as const;
