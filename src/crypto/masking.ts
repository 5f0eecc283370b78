/**
 * Masking of payment identifiers for display and API responses.
 *
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
import { cardBrandOf, type PaymentMethod } from '../validation/transaction.js';

export const MASK_CHAR = '*';
/** PANs at least this long use an 8-digit BIN. */
export const EIGHT_DIGIT_BIN_MIN_PAN_LENGTH = 16;
export const LAST_DIGITS = 4;
/** Digits of a bank account number that always stay hidden. */
export const ACCOUNT_MIN_HIDDEN = 4;

export interface MaskedPan {
  bin: string;
  last4: string;
  masked: string;
}

// PCI DSS 3.4.1 + PCI SSC 8-digit BIN FAQ: BIN length for a PAN of this length.
export function binLength(panLength: number): 6 | 8 {
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

export interface MaskedCard {
  type: 'card';
  /** credit-card-type id (`visa`, `mastercard`, `american-express`, ...) or `unknown`. */
  brand: string;
  bin: string;
  last4: string;
  expiryMonth: number;
  expiryYear: number;
}
export interface MaskedUsBankAccount {
  type: 'us_bank_account';
  routingNumber: string;
  last4: string;
  accountType: 'checking' | 'savings';
}
export interface MaskedIban {
  type: 'iban';
  country: string;
  last4: string;
  bic?: string;
}
export type MaskedPaymentMethod = MaskedCard | MaskedUsBankAccount | MaskedIban;

/** The payment method as the API shows it: masked, no holder name. */
export function maskedView(pm: PaymentMethod): MaskedPaymentMethod {
  switch (pm.type) {
    case 'card': {
      const { bin, last4 } = maskPan(pm.pan);
      return {
        type: 'card',
        brand: cardBrandOf(pm)?.id ?? 'unknown',
        bin,
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
