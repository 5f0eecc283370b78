/**
 * The ONE place a key-lifecycle step becomes a log entry (issue 9). Every lifecycle step —
 * epoch created, retired, rewrapped, shredded, a transaction shredded early, a rotation, a
 * retention run — calls {@link KeyEventLog.record} and waits for it BEFORE the change takes
 * effect: `record()` resolves only after the batch holding the `key_event` leaf has committed
 * (LogAppender contract). If the leaf cannot be made durable, the caller MUST NOT make the change.
 *
 * Leaf encoding lives only in {@link keyEventLeaf}: switching to leaf format v2 is a change here.
 */
import { createHash } from 'node:crypto';
import type { LogAppender } from '../log/appender.js';
import { encodeLeaf, leafTime, LEAF_FORMAT_VERSION, type KeyEventLeaf } from '../log/leaf.js';
import type { Principal } from '../auth/principal.js';

export type KeyEventKind =
  | 'epoch_created'
  | 'epoch_retired'
  | 'epoch_rewrapped'
  | 'epoch_shredded'
  | 'transaction_shredded'
  | 'rotation'
  | 'retention_run';

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
  counts?: Record<string, number>;
}

export const sha256b64 = (b: Uint8Array): string => createHash('sha256').update(b).digest('base64');

/** The leaf for one key event (interim v1 `key_event` fields; see src/log/leaf.ts). */
export function keyEventLeaf(e: KeyEvent): KeyEventLeaf {
  return {
    v: LEAF_FORMAT_VERSION,
    type: 'key_event',
    time: leafTime(e.time),
    event: e.event,
    actor: { role: e.actor.role, name: e.actor.name, ...(e.actor.certificateFingerprint ? { certificateFingerprint: e.actor.certificateFingerprint } : {}) },
    ...(e.epochId !== undefined ? { epochId: e.epochId } : {}),
    ...(e.processor !== undefined ? { processor: e.processor } : {}),
    ...(e.periodStart !== undefined ? { periodStart: leafTime(e.periodStart) } : {}),
    ...(e.periodEnd !== undefined ? { periodEnd: leafTime(e.periodEnd) } : {}),
    ...(e.kmsKeyId !== undefined ? { kmsKeyId: e.kmsKeyId } : {}),
    ...(e.wrappedKey !== undefined ? { wrappedKeySha256: sha256b64(e.wrappedKey) } : {}),
    ...(e.transactionId !== undefined ? { transactionId: e.transactionId } : {}),
    ...(e.reason !== undefined ? { reason: e.reason } : {}),
    ...(e.policy !== undefined ? { policy: e.policy } : {}),
    ...(e.counts !== undefined ? { counts: e.counts } : {}),
  };
}

export class KeyEventLog {
  constructor(private readonly appender: LogAppender) {}

  /** Appends the key event; resolves with its log index only after it is committed. */
  async record(e: KeyEvent): Promise<number> {
    const outcome = await this.appender.append({
      kind: 'key_event',
      leaf: encodeLeaf(keyEventLeaf(e)),
      createdAt: e.time,
      ...(e.transactionId !== undefined ? { transactionId: e.transactionId } : {}),
    });
    return outcome.logIndex;
  }
}
