/**
 * Key event leaf, formats v2 and v3 (v3-only fields and kinds marked `v3:`): the key lifecycle (PCI DSS 3.6/3.7), each committed before the
 * change takes effect. `actor` is the admin principal that asked, or `system` for scheduled
 * jobs (daily retention, start-up epoch creation).
 */
import { z } from 'zod';
import { digest32, epochId, freeText, id, kmsKeyId, msOf, msTime, principalField, principalV2 } from './fields.js';
import { LEAF_FORMAT_CURRENT, cborLeafVersion } from './transaction.js';

export const KEY_EVENT_KINDS = [
  'epoch_created',
  'epoch_retired',
  'epoch_rewrapped',
  'record_rewrapped',
  'epoch_shredded',
  'transaction_shredded',
  'rotation',
  'retention_run',
  'signing_key_added',
  'signing_key_retired',
  // v3: client-side encryption keys (issue 17): created (seed wrapped under its period's KMS
  // key), destroyed (that KMS key scheduled for deletion, the wrapped seed removed). `keyName`
  // is the CSE key id, `kmsKeyId` its period KMS key.
  'cse_key_created',
  'cse_key_destroyed',
  // v3: card security codes destroyed in one clock hour (issue 18): `periodStart`/`periodEnd`
  // (one hour) and `counts` {used, expired} only. One leaf per period, never one per CVC, and
  // nothing naming a transaction or derived from a code.
  'cvc_destroyed',
] as const;
export type KeyEventKind = (typeof KEY_EVENT_KINDS)[number];
/** Event kinds that exist only in leaf format v3. */
export const V3_KEY_EVENT_KINDS: ReadonlySet<KeyEventKind> = new Set(['cse_key_created', 'cse_key_destroyed', 'cvc_destroyed']);
/** The period a `cvc_destroyed` leaf counts: one UTC clock hour (src/cvc/ counts and logs per this period). */
export const CVC_DESTROYED_PERIOD_MS = 60 * 60 * 1000;
const CVC_DESTROYED_FIELDS = new Set(['v', 'type', 'time', 'event', 'actor', 'periodStart', 'periodEnd', 'counts']);

/** A `cvc_destroyed` leaf holds exactly one hour and the two counts, nothing else. */
export function cvcDestroyedWellFormed(l: { event: string; periodStart?: number | undefined; periodEnd?: number | undefined; counts?: Record<string, number> | undefined }): boolean {
  if (l.event !== 'cvc_destroyed') return true;
  const counts = l.counts ?? {};
  return (
    Object.keys(l).every((k) => CVC_DESTROYED_FIELDS.has(k)) &&
    l.periodStart !== undefined &&
    l.periodStart % CVC_DESTROYED_PERIOD_MS === 0 &&
    l.periodEnd === l.periodStart + CVC_DESTROYED_PERIOD_MS &&
    Object.keys(counts).length === 2 &&
    Number.isSafeInteger(counts.used) &&
    Number.isSafeInteger(counts.expired)
  );
}

export const SYSTEM_ACTOR = 'system';
/** Most KMS keys one key_event names (`kmsKeyIds`); a longer list is split over several leaves. */
export const MAX_SHRED_KMS_KEY_IDS = 64;

export const keyEventLeafV2Schema = z
  .strictObject({
  v: cborLeafVersion,
  type: z.literal('key_event'),
  time: msTime,
  event: z.enum(KEY_EVENT_KINDS),
  actor: z.union([z.literal(SYSTEM_ACTOR), principalV2]),
  epoch: epochId.optional(),
  processor: id.optional(),
  periodStart: msTime.optional(),
  periodEnd: msTime.optional(),
  kmsKeyId: kmsKeyId.optional(),
  previousKmsKeyId: kmsKeyId.optional(),
  /** SHA-256 of the wrapped key (epoch private key, or a v1 record's data key) after the event. */
  wrappedKeySha256: digest32.optional(),
  previousWrappedKeySha256: digest32.optional(),
  transactionId: id.optional(),
  /** Signing key name / KMS alias for signing_key_* events; the CSE key id for cse_key_* events. */
  keyName: z.string().min(1).max(256).optional(),
  reason: freeText(256).optional(),
  /** The policy applied, e.g. `{ "retention": "P13M", "asOf": <ms> }`. */
  policy: z.strictObject({ retention: z.string().regex(/^P[0-9YMWDTHS.]{1,32}$/).optional(), asOf: msTime.optional(), epoch: z.enum(['month', 'day', 'hour']).optional() }).optional(),
  /** Counts where relevant (records rewrapped, epochs shredded, transactions affected, ...). */
  counts: z.record(z.string().regex(/^[a-zA-Z][a-zA-Z0-9_]{0,31}$/), z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER)).optional(),
  // v3: SHA-256 of the epoch public key (epoch_created), matched by verify-log with `env.epk`.
  publicKeySha256: digest32.optional(),
  // v3: every KMS key a shred destroys: on `epoch_shredded`, each KMS key that has ever wrapped
  // the epoch's key period (the period's own key and each rewrap's); on `retention_run`, each
  // KMS key the run schedules for deletion. Committed before ScheduleKeyDeletion (issue 17).
  kmsKeyIds: z.array(kmsKeyId).min(1).max(MAX_SHRED_KMS_KEY_IDS).optional(),
  })
  .refine((l) => l.v !== 2 || (l.publicKeySha256 === undefined && l.kmsKeyIds === undefined && !V3_KEY_EVENT_KINDS.has(l.event)), {
    message: 'publicKeySha256, kmsKeyIds and the cse_key_* and cvc_destroyed events are leaf format v3',
  })
  .refine(cvcDestroyedWellFormed, { message: 'a cvc_destroyed event holds exactly one clock hour (periodStart, periodEnd) and counts {used, expired}' });
export type KeyEventLeafV2 = z.infer<typeof keyEventLeafV2Schema>;

export interface KeyEventInput {
  time: Date;
  event: KeyEventKind;
  /** Admin principal, or 'system' for scheduled jobs. */
  actor: { role: string; name: string; certificateFingerprint: string } | typeof SYSTEM_ACTOR;
  epochId?: string;
  processor?: string;
  periodStart?: Date;
  periodEnd?: Date;
  kmsKeyId?: string;
  previousKmsKeyId?: string;
  wrappedKeySha256?: Buffer;
  previousWrappedKeySha256?: Buffer;
  transactionId?: string;
  keyName?: string;
  reason?: string;
  policy?: { retention?: string; asOf?: Date; epoch?: 'month' | 'day' | 'hour' };
  counts?: Record<string, number>;
  publicKeySha256?: Buffer;
  kmsKeyIds?: string[];
}

export function keyEventLeaf(i: KeyEventInput): KeyEventLeafV2 {
  const opt = <K extends string, T>(k: K, v: T | undefined) => (v === undefined ? {} : ({ [k]: v } as { [P in K]: T }));
  return {
    v: LEAF_FORMAT_CURRENT,
    type: 'key_event',
    time: msOf(i.time),
    event: i.event,
    actor: i.actor === SYSTEM_ACTOR ? SYSTEM_ACTOR : principalField(i.actor),
    ...opt('epoch', i.epochId),
    ...opt('processor', i.processor),
    ...opt('periodStart', i.periodStart ? msOf(i.periodStart) : undefined),
    ...opt('periodEnd', i.periodEnd ? msOf(i.periodEnd) : undefined),
    ...opt('kmsKeyId', i.kmsKeyId),
    ...opt('previousKmsKeyId', i.previousKmsKeyId),
    ...opt('wrappedKeySha256', i.wrappedKeySha256),
    ...opt('previousWrappedKeySha256', i.previousWrappedKeySha256),
    ...opt('transactionId', i.transactionId),
    ...opt('keyName', i.keyName),
    ...opt('reason', i.reason),
    ...(i.policy
      ? {
          policy: {
            ...opt('retention', i.policy.retention),
            ...opt('asOf', i.policy.asOf ? msOf(i.policy.asOf) : undefined),
            ...opt('epoch', i.policy.epoch),
          },
        }
      : {}),
    ...opt('counts', i.counts),
    ...opt('publicKeySha256', i.publicKeySha256),
    ...opt('kmsKeyIds', i.kmsKeyIds && i.kmsKeyIds.length > 0 ? [...i.kmsKeyIds] : undefined),
  };
}
