/**
 * Masking of payment identifiers for display and API responses: the one place the masking
 * rules live.
 *
 * What paylog SERVES (`maskedView`, `servedMaskedView`; issue 17): a card is brand, last four
 * and expiry — never the BIN — to every principal; a US bank account is routing number, last
 * four and account type; an IBAN is country, last four and the BIC. The brand is still derived
 * from the BIN (never served). PCI DSS v4.0.1 3.4.1 allows displaying up to the BIN and last
 * four, but 3.5.1 requires that truncated and hashed versions of a PAN cannot be correlated to
 * reconstruct it: BIN + last four + a keyed fingerprint that a submitter can compute for any
 * candidate left 10^3 (16 digits) to 10^4 (13/15 digits) candidates, probed in minutes. Without
 * the BIN a card keeps every digit but its brand prefix and last four unknown (a 16-digit Visa:
 * 11 digits, 10^10 Luhn-valid candidates; a 13-digit Visa: 10^7), and nothing served depends on
 * the hidden digits (SECURITY.md "What each principal is served, and why it cannot be
 * correlated").
 *
 * `maskPan` (BIN + last four) is the PCI DSS 3.4.1 display maximum and is used for nothing served:
 * PAN rule (PCI DSS v4.0.1 Req. 3.4.1: "at most the BIN and last four digits are displayed"):
 * - PAN of 16 digits or more: first 8 (8-digit BIN) + last 4;
 * - shorter PAN (15-digit Amex, 14-digit Diners, ...): first 6 + last 4.
 * Brands migrated to 8-digit BINs for 16-digit PANs (ISO/IEC 7812-1:2017); the PCI SSC FAQ
 * "How can an entity meet PCI DSS requirements for PAN masking and truncation if it has migrated
 * to 8-digit BINs?" (https://www.pcisecuritystandards.org/faq/articles/Frequently_Asked_Question/how-can-an-entity-meet-pci-dss-requirements-for-pan-masking-and-truncation-if-it-has-migrated-to-8-digit-bins/)
 * confirms that Req. 3.4.1 allows displaying the BIN and the last four; FAQ #1091 ("What are
 * acceptable formats for truncation of primary account numbers?") admits 8 leading digits only
 * for 16-digit PANs with 8-digit BINs, so shorter PANs keep the "first 6, last 4" baseline.
 * These are maxima: nothing here ever reveals more.
 *
 * Bank identifiers: account number → at most the last 4 digits, and never more than
 * (length − 4) digits, so at least four stay hidden; IBAN → the first 4 characters (country
 * code + check digits, which reveal nothing about the account) and the last 4.
 *
 * Responses never include the holder name (cardholder data, not needed to identify a payment).
 */
import { electronicFormatIBAN } from 'ibantools';
import { PaylogError } from '../errors.js';
import { cardBrandOf, type PaymentMethod } from './transaction.js';

export const MASK_CHAR = '*';
/** PANs at least this long use an 8-digit BIN. */
const EIGHT_DIGIT_BIN_MIN_PAN_LENGTH = 16;
export const LAST_DIGITS = 4;
/** Digits of a bank account number that always stay hidden. */
const ACCOUNT_MIN_HIDDEN = 4;

interface MaskedPan {
  bin: string;
  last4: string;
  masked: string;
}

// PCI DSS 3.4.1 + PCI SSC 8-digit BIN FAQ: BIN length for a PAN of this length.
function binLength(panLength: number): 6 | 8 {
  return panLength >= EIGHT_DIGIT_BIN_MIN_PAN_LENGTH ? 8 : 6;
}

/** BIN + last four of a PAN (12..19 ASCII digits); the middle digits replaced by `*`. */
export function maskPan(pan: string): MaskedPan {
  if (typeof pan !== 'string' || !/^\d{12,19}$/.test(pan)) {
    throw new PaylogError('INVALID_CARD_NUMBER', 'Card number cannot be masked');
  }
  const bin = pan.slice(0, binLength(pan.length));
  const last4 = pan.slice(-LAST_DIGITS);
  const hidden = pan.length - bin.length - last4.length;
  return { bin, last4, masked: bin + MASK_CHAR.repeat(hidden) + last4 };
}

/** Number of trailing account-number characters that may be shown (≤ 4, ≥ 4 stay hidden). */
function accountVisibleDigits(length: number): number {
  return Math.max(0, Math.min(LAST_DIGITS, length - ACCOUNT_MIN_HIDDEN));
}

/** Last (up to) four digits of an account number; the rest replaced by `*`. */
export function maskAccountNumber(acct: string): { last4: string; masked: string } {
  const visible = accountVisibleDigits(acct.length);
  const last4 = visible === 0 ? '' : acct.slice(-visible);
  return { last4, masked: MASK_CHAR.repeat(acct.length - visible) + last4 };
}

/** IBAN (electronic format) → first 4 + `*`… + last 4, e.g. `DE89**************3000`. */
export function maskIban(iban: string): { country: string; last4: string; masked: string } {
  const electronic = electronicFormatIBAN(iban) ?? '';
  if (electronic.length < 12) {
    throw new PaylogError('INVALID_IBAN', 'IBAN cannot be masked');
  }
  const last4 = electronic.slice(-LAST_DIGITS);
  return {
    country: electronic.slice(0, 2),
    last4,
    masked: electronic.slice(0, 4) + MASK_CHAR.repeat(electronic.length - 8) + last4,
  };
}

interface MaskedCard {
  type: 'card';
  /** credit-card-type id (`visa`, `mastercard`, `american-express`, ...) or `unknown`; derived from the BIN, which is never served. */
  brand: string;
  last4: string;
  expiryMonth: number;
  expiryYear: number;
}
interface MaskedUsBankAccount {
  type: 'us_bank_account';
  routingNumber: string;
  last4: string;
  accountType: 'checking' | 'savings';
}
interface MaskedIban {
  type: 'iban';
  country: string;
  last4: string;
  bic?: string;
}
export type MaskedPaymentMethod = MaskedCard | MaskedUsBankAccount | MaskedIban;

/**
 * The payment method as the API shows it to every principal: masked, no BIN, no holder name.
 * Everything a principal is served about a payment method is this (or `servedMaskedView` of a
 * record stored before it): the idempotency decision and the probe limit are keyed on it.
 */
export function maskedView(pm: PaymentMethod): MaskedPaymentMethod {
  switch (pm.type) {
    case 'card': {
      const { last4 } = maskPan(pm.pan);
      return {
        type: 'card',
        brand: cardBrandOf(pm)?.id ?? 'unknown',
        last4,
        expiryMonth: pm.expiryMonth,
        expiryYear: pm.expiryYear,
      };
    }
    case 'us_bank_account':
      return {
        type: 'us_bank_account',
        routingNumber: pm.routingNumber,
        last4: maskAccountNumber(pm.accountNumber).last4,
        accountType: pm.accountType,
      };
    case 'iban': {
      const { country, last4 } = maskIban(pm.iban);
      return { type: 'iban', country, last4, ...(pm.bic !== undefined ? { bic: pm.bic } : {}) };
    }
  }
}

/** Fields of a stored masked view that are never served (records written before issue 17 hold a BIN). */
const NEVER_SERVED_FIELDS: readonly string[] = ['bin'];

/**
 * A stored masked view (from a leaf or a v1 record's columns) as it is served now: the fields
 * `maskedView` no longer produces (the BIN of records stored before leaf format v3) removed.
 * For a record written now this is the identity.
 */
export function servedMaskedView(stored: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(stored)) if (!NEVER_SERVED_FIELDS.includes(k)) out[k] = v;
  return out;
}
