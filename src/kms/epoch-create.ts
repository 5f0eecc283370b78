/**
 * Creating a key epoch (and finding the KMS key of its period): the only moment an epoch
 * private key exists on the submit path. Called by src/kms/epoch-keys.ts `EpochKeyring`.
 *
 * Contracts:
 * - Creation runs under a cross-process advisory lock per processor (`EPOCH_LOCK_CLASS`).
 *   Without `rotate`, an epoch created meanwhile by another process wins.
 * - Order: retire the processor's other still-encrypting TRUSTED epochs (key event first, then
 *   `retired_at`), wrap the new private key under the period's KMS key (generated, wrapped by
 *   KMS Encrypt, zeroed), commit `epoch_created` (+ `rotation`), and only then insert the row,
 *   with its MAC (src/kms/epoch-rows.ts). So no record can be sealed under an epoch the log
 *   does not name.
 * - Planted rows are never retired, logged or sealed to. A `key_periods` row naming a KMS key
 *   other than its period's alias is reported and creation refused (INTERNAL); a shredded period
 *   refuses creation (DATA_SHREDDED).
 * - Key-period arithmetic is src/keys/periods.ts; nothing here re-derives it.
 */
import { createHash } from 'node:crypto';
import { PaylogError, isPaylogError } from '../errors.js';
import type { AppDatabase } from '../db/connection.js';
import { X25519PrivateKey } from '../crypto/hpke.js';
import type { KmsBackend } from './backend.js';
import type { KeyEvent } from '../services/key-events.js';
import type { KeyPeriod } from '../keys/periods.js';
import { TRUST_COLUMNS, epochRowMac } from './epoch-rows.js';
import { EPOCH_LOCK_CLASS, epochEventSubject, epochIdOf, epochKmsContext, periodKeyAlias, type EpochRow, type TrustedEpochRow } from './epoch-names.js';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest();

/**
 * Every epoch of one processor × period, newest generation first, retired ones included, with
 * what authenticates it. The current epoch is the newest TRUSTED generation, and only if it is
 * neither retired nor shredded: `retired_at` is writable by the runtime role, so an older
 * generation "un-retired" behind the service's back (e.g. one rotated out as compromised) never
 * becomes current again. No LIMIT: each row is checked before one is chosen, so planted rows
 * cannot push the genuine one out of view.
 */
export const SELECT_PERIOD = `SELECT e.*, ${TRUST_COLUMNS} FROM key_epochs e
  WHERE e.processor = $1 AND e.granularity = $2 AND e.period_start = $3
  ORDER BY e.generation DESC`;

/** What creation needs of the keyring: its stores and its rules for trusting rows. */
export interface EpochCreationContext {
  database: AppDatabase;
  kms: KmsBackend;
  /** Commits a key event to the log (src/services/key-events.ts); resolves after commit. */
  recordKeyEvent: (e: KeyEvent) => Promise<number>;
  /** Epoch-row MAC key (src/kms/epoch-rows.ts). */
  rowKey: Buffer;
  /** Whether the service created this row (an untrusted one is reported once). */
  trusted(row: TrustedEpochRow): boolean;
  /** Reports a `key_periods` row that names the wrong KMS key (once per process). */
  reportUntrustedPeriod(id: string): void;
  /** The current epoch among one period's rows ({@link SELECT_PERIOD}): the newest trusted one, if it still encrypts. */
  currentOf(rows: TrustedEpochRow[]): TrustedEpochRow | undefined;
  /** Called for each epoch this creation retired (the keyring forgets what it cached of it). */
  onRetired(processor: string, epochId: string): void;
}

/**
 * The KMS key new epochs of `period` are wrapped under: the newest rewrap target of the
 * period if any (key_period_kms_keys, written only by paylog_keys), else the key the period's
 * alias names (created on first use), recorded in key_periods. The runtime role may INSERT
 * key_periods rows, so a row's `kms_key_id` is never trusted on its own: a row naming another
 * key (e.g. one planted for a future period, naming a key its planter can decrypt with) is
 * reported and creation refused (INTERNAL, 500); nothing is wrapped under it.
 */
async function periodKmsKey(c: EpochCreationContext, period: KeyPeriod): Promise<string> {
  const read = async () =>
    (await c.database.pool.query('SELECT kms_key_id, state FROM key_periods WHERE granularity = $1 AND period_start = $2', [period.granularity, period.start])).rows[0] as
      | { kms_key_id: string; state: string }
      | undefined;
  const arn = await c.kms.ensureKey(periodKeyAlias(period), 'SYMMETRIC_DEFAULT');
  let row = await read();
  if (!row) {
    await c.database.pool.query(
      'INSERT INTO key_periods (granularity, period_start, period_end, kms_key_id) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING',
      [period.granularity, period.start, period.end, arn],
    );
    row = await read();
  }
  if (!row) throw new PaylogError('INTERNAL', 'key period could not be recorded');
  if (row.kms_key_id !== arn) {
    c.reportUntrustedPeriod(`${period.granularity}/${period.label}`);
    throw new PaylogError('INTERNAL', `the key_periods row of ${period.granularity} ${period.label} names a KMS key other than ${periodKeyAlias(period)}: refusing to wrap an epoch key under it`);
  }
  if (row.state !== 'active') throw new PaylogError('DATA_SHREDDED', 'this key period has been shredded; no new epoch can be created in it');
  // After a rewrap, new epochs of the period are wrapped under the period's newest key
  // (key_period_kms_keys: written only by paylog_keys, so the runtime role cannot redirect it).
  const newest = (
    await c.database.pool.query(
      "SELECT kms_key_id FROM key_period_kms_keys WHERE granularity = $1 AND period_start = $2 AND role = 'rewrap_target' ORDER BY round DESC LIMIT 1",
      [period.granularity, period.start],
    )
  ).rows[0] as { kms_key_id: string } | undefined;
  if (newest) return newest.kms_key_id;
  return arn;
}

/**
 * Creates the next epoch of `processor` in `period` under a cross-process advisory lock.
 * Without `rotate`, an existing current epoch (created meanwhile by another process) wins.
 * Order: retire older epochs (key event, then retired_at), wrap the new private key under
 * the period's KMS key, commit `epoch_created` (+ `rotation`), then insert the epoch row.
 */
export async function createEpoch(
  c: EpochCreationContext,
  processor: string,
  period: KeyPeriod,
  now: Date,
  opts: { rotate: boolean; actor?: KeyEvent['actor']; reason?: string },
): Promise<EpochRow> {
  const client = await c.database.pool.connect();
  let broken = false;
  try {
    await client.query('SELECT pg_advisory_lock($1, hashtext($2))', [EPOCH_LOCK_CLASS, processor]);
    try {
      const current = c.currentOf((await client.query(SELECT_PERIOD, [processor, period.granularity, period.start])).rows as TrustedEpochRow[]);
      if (current && !opts.rotate) return current;
      const actor = opts.actor ?? { role: 'system', name: 'paylog' };
      // Retire every other still-encrypting epoch of this processor (period ended, another
      // granularity, or the one being rotated out): decrypt-only from now on.
      // Planted rows are skipped: no key event names them and the service never retires them
      // (they are never sealed to; the new generation below is above theirs).
      const open = (
        await client.query(`SELECT e.*, ${TRUST_COLUMNS} FROM key_epochs e WHERE e.processor = $1 AND e.retired_at IS NULL AND e.shredded_at IS NULL ORDER BY e.period_start, e.generation`, [
          processor,
        ])
      ).rows as TrustedEpochRow[];
      for (const e of open.filter((r) => c.trusted(r))) {
        await c.recordKeyEvent({
          event: 'epoch_retired',
          time: now,
          actor,
          ...epochEventSubject(e),
          reason: opts.rotate && e.epoch_id === current?.epoch_id ? (opts.reason ?? 'rotation') : 'period ended',
        });
        await client.query('UPDATE key_epochs SET retired_at = $2 WHERE epoch_id = $1 AND retired_at IS NULL', [e.epoch_id, now]);
        c.onRetired(processor, e.epoch_id);
      }
      const generation = Number(
        (await client.query('SELECT coalesce(max(generation) + 1, 0) AS g FROM key_epochs WHERE processor = $1 AND granularity = $2 AND period_start = $3', [processor, period.granularity, period.start]))
          .rows[0].g,
      );
      const epochId = epochIdOf(processor, period, generation);
      const kmsKeyId = await periodKmsKey(c, period);
      const sk = X25519PrivateKey.generate();
      const publicKey = sk.publicKey;
      const raw = sk.exportRaw();
      let wrapped: Buffer;
      try {
        wrapped = await c.kms.encrypt(kmsKeyId, raw, epochKmsContext(epochId, publicKey));
      } finally {
        raw.fill(0);
        sk.destroy();
      }
      if (opts.rotate) {
        await c.recordKeyEvent({ event: 'rotation', time: now, actor, processor, epochId, ...(opts.reason ? { reason: opts.reason } : {}) });
      }
      await c.recordKeyEvent({
        event: 'epoch_created',
        time: now,
        actor,
        epochId,
        processor,
        periodStart: period.start,
        periodEnd: period.end,
        kmsKeyId,
        wrappedKey: wrapped,
        publicKeySha256: sha256(publicKey),
      });
      const mac = epochRowMac(c.rowKey, {
        epoch_id: epochId,
        processor,
        granularity: period.granularity,
        period_start: period.start,
        period_end: period.end,
        generation,
        public_key: publicKey,
      });
      const row = (
        await client.query(
          `INSERT INTO key_epochs (epoch_id, processor, granularity, period_start, period_end, generation, public_key, kms_key_id, wrapped_private_key, wrapped_key_sha256, mac)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING *`,
          [epochId, processor, period.granularity, period.start, period.end, generation, publicKey, kmsKeyId, wrapped, sha256(wrapped), mac],
        )
      ).rows[0] as EpochRow;
      return row;
    } finally {
      await client.query('SELECT pg_advisory_unlock($1, hashtext($2))', [EPOCH_LOCK_CLASS, processor]).catch(() => {
        broken = true;
      });
    }
  } catch (e) {
    if (!isPaylogError(e)) broken = broken || /connection|terminat/i.test(String((e as Error)?.message));
    throw e;
  } finally {
    client.release(broken);
  }
}
