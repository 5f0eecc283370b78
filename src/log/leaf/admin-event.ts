/**
 * Admin event leaf, formats v2 and v3 (same shape) (PCI DSS 10.2.1.2 actions by administrators, 10.2.2 fields):
 * who (principal role, name, certificate fingerprint), what (action and its target), when
 * (`time`), from where (`source`), outcome. Appended and committed BEFORE the change takes
 * effect; a change that then fails is followed by a second entry with outcome `failed`.
 */
import { z } from 'zod';
import { digest32, freeText, msOf, msTime, principalField, principalV2, sourceAddress, certFingerprintBytes } from './fields.js';
import { LEAF_FORMAT_CURRENT, cborLeafVersion } from './transaction.js';

export const ADMIN_ACTIONS = [
  'processor_registered',
  'processor_disabled',
  'processor_enabled',
  'certificate_revoked',
  // Issue 18 (v3): a processor's forward destinations.
  'destination_registered',
  'destination_removed',
] as const;
export type AdminAction = (typeof ADMIN_ACTIONS)[number];
export const ADMIN_OUTCOMES = ['granted', 'denied', 'failed'] as const;

export const adminEventLeafSchema = z.strictObject({
  v: cborLeafVersion,
  type: z.literal('admin_event'),
  time: msTime,
  action: z.enum(ADMIN_ACTIONS),
  actor: principalV2,
  source: sourceAddress,
  outcome: z.enum(ADMIN_OUTCOMES),
  /** Error code when denied or failed. */
  reason: z.string().max(64).optional(),
  /** Target processor (processor_* actions). */
  processor: z.string().min(1).max(128).optional(),
  /** Target certificate (certificate_revoked): SHA-256 fingerprint and/or serial (lowercase hex). */
  cert: digest32.optional(),
  serial: z.string().regex(/^[0-9a-f]{1,64}$/).optional(),
  /** Operator's free-text note (e.g. the revocation reason). */
  note: freeText(200).optional(),
  /** Target forward destination (destination_* actions, with `processor`). */
  dest: z.string().min(1).max(64).optional(),
  /**
   * destination_registered: SHA-256 of the destination's canonical configuration (URL, paths,
   * methods, CA, pins, client certificate, digest of the KMS-wrapped client key, private-network
   * flag, timeout). A destination row is used only while it hashes to this.
   */
  cfg: digest32.optional(),
});
export type AdminEventLeaf = z.infer<typeof adminEventLeafSchema>;

export interface AdminEventInput {
  time: Date;
  action: AdminAction;
  principal: { role: string; name: string; certificateFingerprint: string };
  sourceAddress: string;
  outcome: (typeof ADMIN_OUTCOMES)[number];
  reason?: string | undefined;
  processor?: string | undefined;
  /** `sha256:<hex>` of the revoked certificate. */
  certificateFingerprint?: string | undefined;
  serial?: string | undefined;
  note?: string | undefined;
  destination?: string | undefined;
  configSha256?: Buffer | undefined;
}

export function adminEventLeaf(i: AdminEventInput): AdminEventLeaf {
  return {
    v: LEAF_FORMAT_CURRENT,
    type: 'admin_event',
    time: msOf(i.time),
    action: i.action,
    actor: principalField(i.principal),
    source: i.sourceAddress,
    outcome: i.outcome,
    ...(i.reason ? { reason: i.reason } : {}),
    ...(i.processor ? { processor: i.processor } : {}),
    ...(i.certificateFingerprint ? { cert: certFingerprintBytes(i.certificateFingerprint) } : {}),
    ...(i.serial ? { serial: i.serial } : {}),
    ...(i.note ? { note: i.note } : {}),
    ...(i.destination ? { dest: i.destination } : {}),
    ...(i.configSha256 ? { cfg: i.configSha256 } : {}),
  };
}
