/**
 * Payment-method checks: card numbers (brand, length, Luhn: card-validator's verdict, computed
 * by ./card-number.ts without its per-call table copies), card expiry,
 * ABA routing numbers, IBANs (ISO 13616 / ISO 7064 mod 97-10 via ibantools), and step 6 of
 * `validateTransactionRequest`, which applies them to a parsed payment method.
 *
 * MUST: throw a PaylogError with the method's stable code and a constant message naming the
 *       field at fault; never copy the number into the error.
 * MUST: keep a card's brand only in a WeakMap keyed by the request's own payment-method object.
 * MUST NOT: detect PANs in free text (one PAN detector: ./identifiers.ts).
 */
import { electronicFormatIBAN, isValidIBAN } from 'ibantools';
import { PaylogError } from '../errors.js';
import { cardNumberVerdict } from './card-number.js';
import { CHECK_MESSAGES } from './messages.js';
import type { PaymentMethod } from './transaction-schema.js';

// Card numbers

/** Brand as detected by card-validator (credit-card-type ids, e.g. `visa`, `american-express`). */
interface CardBrand {
  /** credit-card-type id, e.g. `visa`, `mastercard`, `american-express`, `diners-club`. */
  id: string;
  /** Display name, e.g. `Visa`, `American Express`. */
  name: string;
}

/** The one brand card-validator attributes to `pan` (digits only), or null if none/ambiguous. */
export function detectCardBrand(pan: string): CardBrand | null {
  if (!/^\d+$/.test(pan)) return null;
  return brandOf(cardNumberVerdict(pan).card);
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

/** PAN rule (step 6): ASCII digits only (no spaces), 12..19 long, then one known brand, its length and Luhn. */
const PAN_SHAPE = /^\d{12,19}$/;

/** A card is valid through the last instant of its expiry month (UTC). */
function isCardExpired(expiryMonth: number, expiryYear: number, now: Date): boolean {
  return now.getTime() >= Date.UTC(expiryYear, expiryMonth, 1); // month index = next month
}

/** Candidate IBANs in free text: country code, check digits, 11–30 alphanumerics (spaces allowed). */
const IBAN_CANDIDATE = /[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}/g;

/**
 * Cheap necessary condition for an IBAN candidate: two adjacent ASCII digits (its check digits),
 * or any non-ASCII character (which NFKC may fold into a digit or a letter). ASCII text without
 * two adjacent digits cannot match IBAN_CANDIDATE: upper-casing ASCII creates no digit.
 */
const MAY_HOLD_IBAN = /\d\d|[^\x00-\x7f]/;

/** True when `text` contains a checksum-valid IBAN (ISO 13616), grouped or not. */
export function containsIban(text: string): boolean {
  if (!MAY_HOLD_IBAN.test(text)) return false;
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
function normalizeIban(iban: string): string | null {
  const electronic = electronicFormatIBAN(iban);
  if (electronic === null || !/^[A-Z]{2}\d{2}[A-Z0-9]{1,30}$/.test(electronic)) return null;
  return isValidIBAN(electronic) ? electronic : null;
}

// Step 6: payment-method specific checks; returns the normalised payment method.
export function checkPaymentMethod(pm: PaymentMethod, now: Date): PaymentMethod {
  switch (pm.type) {
    case 'card': {
      // The PAN rule (PAN_SHAPE, then card-validator), with its verdict kept for the brand.
      const verdict = PAN_SHAPE.test(pm.pan) ? cardNumberVerdict(pm.pan) : null;
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
