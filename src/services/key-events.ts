import { PaylogError } from '../errors.js';
/**
 * The ONE place a key-lifecycle step becomes a log entry (issue 9). Every lifecycle step —
 * epoch created, retired, rewrapped, shredded, a transaction shredded early, a rotation, a
 * retention run — calls {@link KeyEventLog.record} and waits for it BEFORE the change takes
 * effect: `record()` resolves only after the batch holding the `key_event` leaf has committed
 * (Appender contract). If the leaf cannot be made durable, the caller MUST NOT make the change.
 *
 * Leaf encoding lives only in {@link keyEventLeafOf} (leaf format v2 `key_event`).
 */
import { createHash } from 'node:crypto';
import type { Appender } from '../log/appender.js';
import { encodeLeaf, keyEventLeaf, SYSTEM_ACTOR as SYSTEM, type KeyEventLeafV2 } from '../log/leaf.js';
import type { Principal } from '../auth/principal.js';

export type KeyEventKind =
  | 'epoch_created'
  | 'epoch_retired'
  | 'epoch_rewrapped'
  | 'record_rewrapped'
  | 'epoch_shredded'
  | 'transaction_shredded'
  | 'rotation'
  | 'retention_run'
  | 'cse_key_created'
  | 'cse_key_destroyed'
  | 'cvc_destroyed';

/** Who caused the step: an admin certificate, or paylog itself (epoch creation, daily retention). */
export interface KeyEventActor {
  role: string;
  name: string;
  certificateFingerprint?: string;
}

export const SYSTEM_ACTOR: KeyEventActor = { role: 'system', name: 'paylog' };

export function actorOf(p: Principal): KeyEventActor {
  return { role: p.role, name: p.name, certificateFingerprint: p.certificateFingerprint };
}

export interface KeyEvent {
  event: KeyEventKind;
  time: Date;
  actor: KeyEventActor;
  epochId?: string;
  processor?: string;
  periodStart?: Date;
  periodEnd?: Date;
  kmsKeyId?: string;
  /** The wrapped key as stored after this step (SHA-256). */
  wrappedKey?: Buffer;
  transactionId?: string;
  reason?: string;
  policy?: string;
  /** Retention runs: the time the policy was applied as of. */
  asOf?: Date;
  previousKmsKeyId?: string;
  counts?: Record<string, number>;
  /** cse_key_* events: the CSE key id (leaf `keyName`). */
  keyName?: string;
  /** Shreds (v3 leaves): every KMS key the shred destroys (see key-event.ts `kmsKeyIds`). */
  kmsKeyIds?: string[];
  /** `epoch_created`: SHA-256 of the epoch public key (leaf v3), which transaction leaves sealed to it name as `env.epk`; `cse_key_created`: of the CSE key's public point. */
  publicKeySha256?: Buffer;
}

const sha256 = (b: Uint8Array): Buffer => createHash('sha256').update(b).digest();

/**
 * The leaf for one key event: leaf format v2 `key_event` (src/log/leaf/key-event.ts). Epoch
 * ids are `<processor>/<period>/<generation>`; the policy carries the retention setting.
 */
function keyEventLeafOf(e: KeyEvent): KeyEventLeafV2 {
  const retention = e.policy?.startsWith('PAYLOG_RETENTION=') ? e.policy.slice('PAYLOG_RETENTION='.length) : undefined;
  return keyEventLeaf({
    time: e.time,
    event: e.event,
    actor: e.actor.certificateFingerprint ? { role: e.actor.role, name: e.actor.name, certificateFingerprint: e.actor.certificateFingerprint } : SYSTEM,
    ...(e.epochId !== undefined ? { epochId: e.epochId } : {}),
    ...(e.processor !== undefined ? { processor: e.processor } : {}),
    ...(e.periodStart !== undefined ? { periodStart: e.periodStart } : {}),
    ...(e.periodEnd !== undefined ? { periodEnd: e.periodEnd } : {}),
    ...(e.kmsKeyId !== undefined ? { kmsKeyId: e.kmsKeyId } : {}),
    ...(e.previousKmsKeyId !== undefined ? { previousKmsKeyId: e.previousKmsKeyId } : {}),
    ...(e.wrappedKey !== undefined ? { wrappedKeySha256: sha256(e.wrappedKey) } : {}),
    ...(e.transactionId !== undefined ? { transactionId: e.transactionId } : {}),
    ...(e.keyName !== undefined ? { keyName: e.keyName } : {}),
    ...(e.reason !== undefined ? { reason: e.reason } : {}),
    ...(retention !== undefined || e.asOf !== undefined ? { policy: { ...(retention ? { retention } : {}), ...(e.asOf ? { asOf: e.asOf } : {}) } } : {}),
    ...(e.counts !== undefined ? { counts: e.counts } : {}),
    ...(e.publicKeySha256 !== undefined ? { publicKeySha256: e.publicKeySha256 } : {}),
    ...(e.kmsKeyIds !== undefined && e.kmsKeyIds.length > 0 ? { kmsKeyIds: e.kmsKeyIds } : {}),
  });
}

export class KeyEventLog {
  constructor(private readonly appender: Appender) {}

  /** Appends the key event; resolves with its log index only after it is committed. */
  async record(e: KeyEvent): Promise<number> {
    const outcome = await this.appender.append({
      kind: 'key_event',
      leaf: encodeLeaf(keyEventLeafOf(e)),
      createdAt: e.time,
      ...(e.transactionId !== undefined ? { transactionId: e.transactionId } : {}),
    });
    if (outcome.status === 'refused') throw new PaylogError('INTERNAL', 'a key event carries no precondition and cannot be refused');
    return outcome.logIndex;
  }
}
