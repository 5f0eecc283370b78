/**
 * Access leaf, formats v2 and v3 (same shape): one release (or read, or forward) attempt and its
 * outcome (PCI DSS 10.2.1.1, 10.2.2). Action `forward` (v3 only, issue 18) carries `fwd`: the
 * destination, method, path and the SHA-256 of the caller's TEMPLATE (never of the filled request,
 * which holds card data).
 */
import { z } from 'zod';
import { digest32, freeText, id, msOf, msTime, principalField, principalV2, principalView, sourceAddress } from './fields.js';
import { LEAF_FORMAT_CURRENT, LEAF_FORMAT_V3, cborLeafVersion } from './transaction.js';

/** What a forward's access entry names (v3): where to, which request, which template. */
const forwardTargetSchema = z.strictObject({
  dest: z.string().min(1).max(64),
  method: z.string().min(1).max(10),
  path: freeText(512),
  /** SHA-256 of the template exactly as the caller sent it (placeholders, not values). */
  tpl: digest32,
  /**
   * Keyed MAC (service key) of the transaction id and Idempotency-Key: lets the service see in
   * the log that a key was already granted, whatever the runtime-writable ledger row says.
   */
  key: digest32,
});


export const accessLeafV2Schema = z
  .strictObject({
  v: cborLeafVersion,
  type: z.literal('access'),
  time: msTime,
  transactionId: id,
  action: z.enum(['release', 'read', 'forward']),
  actor: principalV2,
  purpose: z.string().max(32).optional(),
  reference: freeText(256).optional(),
  outcome: z.enum(['granted', 'denied']),
  reason: z.string().max(64).optional(),
  source: sourceAddress,
  fwd: forwardTargetSchema.optional(),
  })
  // `fwd` only on forward entries (always on granted ones), and forwards only in leaf format v3.
  .refine((l) => (l.fwd === undefined || l.action === 'forward') && (l.action !== 'forward' || (l.v === LEAF_FORMAT_V3 && (l.outcome === 'denied' || l.fwd !== undefined))), {
    message: 'fwd only on v3 forward entries, and on every granted one',
  });
export type AccessLeafV2 = z.infer<typeof accessLeafV2Schema>;

export interface AccessLeafInput {
  time: Date;
  transactionId: string;
  action: 'release' | 'read' | 'forward';
  principal: { role: string; name: string; certificateFingerprint: string };
  purpose?: string | undefined;
  reference?: string | undefined;
  outcome: 'granted' | 'denied';
  /** Error code when denied. */
  reason?: string | undefined;
  sourceAddress: string;
  /** Action `forward` only. */
  forward?: { destination: string; method: string; path: string; templateSha256: Buffer; keyMac: Buffer } | undefined;
}

export function accessLeafV2(i: AccessLeafInput): AccessLeafV2 {
  return {
    v: LEAF_FORMAT_CURRENT,
    type: 'access',
    time: msOf(i.time),
    transactionId: i.transactionId,
    action: i.action,
    actor: principalField(i.principal),
    ...(i.purpose ? { purpose: i.purpose } : {}),
    ...(i.reference ? { reference: i.reference } : {}),
    outcome: i.outcome,
    ...(i.reason ? { reason: i.reason } : {}),
    source: i.sourceAddress,
    ...(i.forward ? { fwd: { dest: i.forward.destination, method: i.forward.method, path: i.forward.path, tpl: i.forward.templateSha256, key: i.forward.keyMac } } : {}),
  };
}

/** What `GET /v1/transactions/{id}/accesses` serves for one access entry. */
export interface AccessServedView {
  transactionId: string;
  action: string;
  principal: { role: string; name: string; certificateFingerprint: string };
  purpose: string | null;
  reference: string | null;
  outcome: string;
  reason: string | null;
  sourceAddress: string;
  time: string;
  /** Forward entries: destination, method, path and the template's SHA-256 (hex). */
  forward?: { destination: string; method: string; path: string; templateSha256: string };
}

export function accessViewFromLeaf(l: AccessLeafV2): AccessServedView {
  return {
    transactionId: l.transactionId,
    action: l.action,
    principal: principalView(l.actor),
    purpose: l.purpose ?? null,
    reference: l.reference ?? null,
    outcome: l.outcome,
    reason: l.reason ?? null,
    sourceAddress: l.source,
    time: new Date(l.time).toISOString(),
    ...(l.fwd ? { forward: { destination: l.fwd.dest, method: l.fwd.method, path: l.fwd.path, templateSha256: l.fwd.tpl.toString('hex') } } : {}),
  };
}
