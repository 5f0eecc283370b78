/**
 * The one accepted place for a card security code (issue 18 item 4; contract v1.2):
 * `paymentMethod.cvc` of a card submission, exactly that key, 3–4 ASCII digits.
 *
 * Contract: {@link takeCardSecurityCode} runs BEFORE the sensitive-data detector and removes
 * only that one member from a copy of the body; everything else — a CVC under any other name or
 * in any other place (metadata, the top level, a bank payment method), track data, PINs — still
 * reaches the detector and is refused as before. The caller MUST validate, seal and MAC the
 * returned body only (the CVC is never part of the record, its leaf or its idempotency MAC) and
 * hand the CVC to src/cvc/ alone. Errors never contain the value.
 */
import { PaylogError } from '../errors.js';

/** The accepted member name. */
const CVC_FIELD = 'cvc';
/** The 3–4 ASCII digits of a card security code (the one definition). */
export const CVC_PATTERN = /^[0-9]{3,4}$/;

const isPlainObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * Splits `raw` into the body without `paymentMethod.cvc` and the CVC (undefined when absent).
 * A CVC that is not 3–4 digits, or given for a payment method that is not a card, is left in
 * place for the detector (a non-card) or refused here (VALIDATION_FAILED at `paymentMethod.cvc`).
 */
export function takeCardSecurityCode(raw: unknown): { body: unknown; cvc?: string } {
  if (!isPlainObject(raw) || !isPlainObject(raw.paymentMethod)) return { body: raw };
  const pm = raw.paymentMethod;
  if (pm.type !== 'card' || !Object.hasOwn(pm, CVC_FIELD)) return { body: raw };
  const { [CVC_FIELD]: cvc, ...rest } = pm;
  if (typeof cvc !== 'string' || !CVC_PATTERN.test(cvc)) {
    throw new PaylogError('VALIDATION_FAILED', 'Request body failed validation', {
      issues: [{ path: 'paymentMethod.cvc', code: 'invalid_card_security_code', message: 'paymentMethod.cvc must be a string of 3 or 4 digits (0-9)' }],
    });
  }
  return { body: { ...raw, paymentMethod: rest }, cvc };
}
