/**
 * What each placeholder stands for (contract v1.2), from a transaction's opened payment method.
 * Pure. Expiry in the formats processor APIs ask for: month two digits, year four or two digits.
 */
import type { PlaceholderName } from './template.js';

/**
 * Placeholders whose substituted value is masked wherever it appears in the answer (the card
 * number is found by the PAN detector, in any spelling, and keeps its last four).
 */
export const MASKED_EXACT: ReadonlySet<PlaceholderName> = new Set(['card.cvc', 'bank.accountNumber', 'iban.iban']);

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : typeof v === 'number' ? String(v) : undefined);

/** The values of every placeholder the payment method has (the CVC comes separately). */
export function placeholderValues(
  paymentMethod: Readonly<Record<string, unknown>>,
  tx: { transactionId: string; amount: { value: number; currency: string } },
): Partial<Record<PlaceholderName, string>> {
  const pm = paymentMethod;
  const out: Partial<Record<PlaceholderName, string>> = {
    'amount.value': String(tx.amount.value),
    'amount.currency': tx.amount.currency,
    transactionId: tx.transactionId,
  };
  const set = (k: PlaceholderName, v: string | undefined) => {
    if (v !== undefined) out[k] = v;
  };
  if (pm.type === 'card') {
    set('card.number', str(pm.pan));
    const month = str(pm.expiryMonth);
    const year = str(pm.expiryYear);
    set('card.expiryMonth', month?.padStart(2, '0'));
    set('card.expiryYear', year);
    set('card.expiryYear2', year?.slice(-2));
    set('card.holderName', str(pm.holderName));
  } else if (pm.type === 'us_bank_account') {
    set('bank.accountNumber', str(pm.accountNumber));
    set('bank.routingNumber', str(pm.routingNumber));
    set('bank.accountType', str(pm.accountType));
  } else if (pm.type === 'iban') {
    set('iban.iban', str(pm.iban));
    set('iban.bic', str(pm.bic));
  }
  return out;
}
