/**
 * Key epoch rows the service can trust (issue 17 item 3). The runtime role may INSERT into
 * `key_epochs` (and UPDATE `retired_at`), so a row's presence proves nothing: a planted row with
 * a higher generation would otherwise be the "current" epoch and new card data would be sealed
 * to the planter's public key. Each row the service creates carries
 *
 *   mac = HMAC-SHA256(K_epoch, "paylog/key-epoch/v1" ‖ len‖epoch_id ‖ len‖processor ‖
 *         len‖granularity ‖ u64be(period_start ms) ‖ u64be(period_end ms) ‖ u32be(generation) ‖
 *         len‖public_key)          (len = u32be byte length)
 *
 * with `K_epoch = HMAC-SHA256(service key, "paylog/key-epoch-key/v1")`, held only in the
 * service's memory (the service key is KMS-wrapped at rest, src/keyring.ts). The MAC covers
 * the epoch's immutable identity only — not `kms_key_id`, `wrapped_private_key`,
 * `wrapped_key_sha256`, `retired_at`, `shredded_at`, which rewrap, shred and retirement change
 * legitimately (a wrong wrapped key cannot unwrap to a key matching the MAC'd public key: the
 * release path checks that, src/kms/epoch-keys.ts).
 *
 * Rows from before the column existed (NULL mac) are trusted only when migration 0009 listed
 * them, with the same public key, in `paylog_legacy_key_epochs` (read-only for the runtime role).
 *
 * Contract: a row for which {@link epochRowTrusted} is false MUST NOT be used to seal or to
 * unwrap; callers skip it, report it (once per row per process) and count it.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

const EPOCH_ROW_MAC_LABEL = 'paylog/key-epoch/v1';
const KEY_LABEL = 'paylog/key-epoch-key/v1';

/** The columns the MAC covers (the epoch's immutable identity). */
export interface EpochIdentity {
  epoch_id: string;
  processor: string;
  granularity: string;
  period_start: Date;
  period_end: Date;
  generation: number;
  public_key: Buffer;
}

/** A row as read with {@link TRUST_COLUMNS}: its MAC and whether migration 0009 listed it. */
export interface EpochRowTrust {
  mac: Buffer | null;
  legacy: boolean;
}

/**
 * Select-list fragment for `key_epochs e`: `mac` is `e.*`; `legacy` is true when the row has
 * no MAC and migration 0009 recorded it with the same public key.
 */
export const TRUST_COLUMNS = `(e.mac IS NULL AND EXISTS (SELECT 1 FROM paylog_legacy_key_epochs l WHERE l.epoch_id = e.epoch_id AND l.public_key = e.public_key)) AS legacy`;

/** Derives the epoch-row MAC key from the service's key (never the key itself). */
export function epochRowKey(serviceKey: Buffer): Buffer {
  return createHmac('sha256', serviceKey).update(KEY_LABEL).digest();
}

function lengthPrefixed(b: Buffer): Buffer[] {
  const n = Buffer.alloc(4);
  n.writeUInt32BE(b.length);
  return [n, b];
}

export function epochRowMac(key: Buffer, e: EpochIdentity): Buffer {
  const u64 = (d: Date) => {
    const b = Buffer.alloc(8);
    b.writeBigInt64BE(BigInt(new Date(d).getTime()));
    return b;
  };
  const gen = Buffer.alloc(4);
  gen.writeUInt32BE(e.generation >>> 0);
  const h = createHmac('sha256', key).update(EPOCH_ROW_MAC_LABEL);
  for (const part of [
    ...lengthPrefixed(Buffer.from(e.epoch_id, 'utf8')),
    ...lengthPrefixed(Buffer.from(e.processor, 'utf8')),
    ...lengthPrefixed(Buffer.from(e.granularity, 'utf8')),
    u64(e.period_start),
    u64(e.period_end),
    gen,
    ...lengthPrefixed(Buffer.from(e.public_key)),
  ]) {
    h.update(part);
  }
  return h.digest();
}

/** Whether the service may use this row: its MAC verifies, or migration 0009 listed it. */
export function epochRowTrusted(key: Buffer, row: EpochIdentity & EpochRowTrust): boolean {
  if (row.legacy) return true;
  if (row.mac === null || row.mac.length !== 32) return false;
  return timingSafeEqual(epochRowMac(key, row), row.mac);
}
