/**
 * The seam between forwards and the card security code store (issue 18 item 4): the forward
 * service receives this function by composition (src/bootstrap/services.ts) and knows nothing
 * else of how a CVC is held.
 *
 * Contract for implementations: `takeCardSecurityCode(transactionId)` atomically CONSUMES the
 * CVC held for the transaction — across workers and instances, at most one caller ever gets it
 * — and resolves undefined when none is held (never submitted, already used, or expired). The
 * forward service calls it only after the forward's access entry has committed, right before
 * egress, and only when the template uses `{{card.cvc}}`. Implemented by src/cvc/codes.ts
 * (`CardSecurityCodes.take`), composed in src/bootstrap/services.ts (also for the `authorize`
 * release).
 */
export type TakeCardSecurityCode = (transactionId: string) => Promise<string | undefined>;
