/**
 * Epoch names (pure; the rules src/kms/epoch-keys.ts and the key lifecycle share): epoch ids,
 * the aliases of the per-period KMS keys, the KMS encryption context of a wrapped epoch private
 * key, and the shape of a `key_epochs` row.
 *
 * Contracts: every name and context key here is STABLE (they name KMS aliases, epoch ids in
 * leaves, and the encryption context KMS authenticates); MUST NOT change. No I/O.
 */
import type { EpochIdentity, EpochRowTrust } from './epoch-rows.js';
import { periodOf, type KeyPeriod, type PeriodGranularity } from '../keys/periods.js';

/** Key-period arithmetic lives in src/keys/periods.ts (shared with the CSE keys). */
export type EpochGranularity = PeriodGranularity;
export { periodOf, type KeyPeriod };

/** KMS encryption-context keys of a wrapped epoch private key (stable). */
const KMS_CONTEXT_EPOCH = 'paylog:epoch';
const KMS_CONTEXT_EPOCH_PUBLIC_KEY = 'paylog:epoch-public-key';
export const KMS_CONTEXT_KEY_PURPOSE = 'paylog:key-purpose';
const EPOCH_KEY_PURPOSE = 'epoch-private-key/x25519';
/** Alias prefix of the per-period KMS keys (operator-created ahead, or by paylog with kms:CreateKey). */
const PERIOD_KEY_ALIAS_PREFIX = 'alias/paylog-epoch-';
/** Advisory lock class for epoch creation ("pyke"), second key = hashtext(processor). */
export const EPOCH_LOCK_CLASS = 0x70796b65;

/** `<processor>/<period label>/<generation>`, e.g. `acme/2026-12/0`. */
export function epochIdOf(processor: string, period: KeyPeriod, generation: number): string {
  return `${processor}/${period.label}/${generation}`;
}

export function periodKeyAlias(period: KeyPeriod): string {
  return `${PERIOD_KEY_ALIAS_PREFIX}${period.granularity}-${period.label}`;
}

/**
 * Alias of the KMS key that rewrap round `round` (1, 2, ...) creates for `period`, e.g.
 * `alias/paylog-epoch-month-2026-12-r1`: a key of that period only (issue 17).
 */
export function periodRewrapKeyAlias(period: KeyPeriod, round: number): string {
  return `${periodKeyAlias(period)}-r${round}`;
}

/** KMS encryption context binding a wrapped epoch private key to its epoch and public key. */
export function epochKmsContext(epochId: string, publicKey: Buffer): Record<string, string> {
  return {
    [KMS_CONTEXT_EPOCH]: epochId,
    [KMS_CONTEXT_EPOCH_PUBLIC_KEY]: publicKey.toString('base64'),
    [KMS_CONTEXT_KEY_PURPOSE]: EPOCH_KEY_PURPOSE,
  };
}

/** A `key_epochs` row: its MAC'd identity (./epoch-rows.ts) and the columns rewrap and shred change. */
export interface EpochRow extends EpochIdentity {
  kms_key_id: string | null;
  wrapped_private_key: Buffer | null;
  wrapped_key_sha256: Buffer | null;
  retired_at: Date | null;
  shredded_at: Date | null;
}

/** A row as read for use: with its MAC and whether migration 0009 listed it (src/kms/epoch-rows.ts). */
export type TrustedEpochRow = EpochRow & EpochRowTrust;

/** What every key event about one epoch names: the epoch, its processor and its period. */
export function epochEventSubject(e: EpochRow): { epochId: string; processor: string; periodStart: Date; periodEnd: Date } {
  return { epochId: e.epoch_id, processor: e.processor, periodStart: e.period_start, periodEnd: e.period_end };
}

