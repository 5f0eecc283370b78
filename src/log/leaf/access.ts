/** Access leaf, formats v2 and v3 (same shape): one release (or read) attempt and its outcome (PCI DSS 10.2.1.1, 10.2.2). */
import { z } from 'zod';
import { freeText, id, msOf, msTime, principalField, principalV2, principalView, sourceAddress } from './fields.js';
import { LEAF_FORMAT_CURRENT, cborLeafVersion } from './transaction.js';

export const accessLeafV2Schema = z.strictObject({
  v: cborLeafVersion,
  type: z.literal('access'),
  time: msTime,
  transactionId: id,
  action: z.enum(['release', 'read']),
  actor: principalV2,
  purpose: z.string().max(32).optional(),
  reference: freeText(256).optional(),
  outcome: z.enum(['granted', 'denied']),
  reason: z.string().max(64).optional(),
  source: sourceAddress,
});
export type AccessLeafV2 = z.infer<typeof accessLeafV2Schema>;

export interface AccessLeafInput {
  time: Date;
  transactionId: string;
  action: 'release' | 'read';
  principal: { role: string; name: string; certificateFingerprint: string };
  purpose?: string | undefined;
  reference?: string | undefined;
  outcome: 'granted' | 'denied';
  /** Error code when denied. */
  reason?: string | undefined;
  sourceAddress: string;
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
  };
}
