/**
 * Opening a stored record's payment method in memory: the one path release and forward take
 * (the data key row, then the record keyring). Nothing here logs or returns anything: callers
 * MUST commit their access entry before any of the plaintext leaves the process, and zero it.
 */
import type { AppDatabase } from '../db/connection.js';
import { PaylogError } from '../errors.js';
import type { RecordKeyring } from '../keys/record-keys.js';
import type { TransactionRecord } from './transaction-record.js';
import { epochIdSql, wrappedKeySql } from './transaction-queries.js';

/** The `data_keys` row of a record, as `openRecordWith` needs it (undefined: no row); `wrappedKey` whole (`wrappedKeySql`). */
export interface DataKeyRow {
  logIndex: number;
  wrappedKey: Buffer | null;
  epochId: string | null;
  kmsKeyId: string | null;
  shreddedAt: Date | null;
}

/** Reads the `data_keys` row of the record at `logIndex` (one query; a forward reads it beside its other first reads: src/services/forward/first-reads.ts). */
async function readDataKey(database: AppDatabase, logIndex: number): Promise<DataKeyRow | undefined> {
  const r = await database.pool.query({
    name: 'paylog_read_data_key',
    text: `SELECT d.log_index, ${wrappedKeySql('d', 'w')} AS wrapped_key, ${epochIdSql('d', 'w')} AS epoch_id, d.kms_key_id, d.shredded_at
             FROM data_keys d LEFT JOIN key_wrap_windows w ON w.id = d.window_id WHERE d.log_index = $1`,
    values: [logIndex],
  });
  const row = r.rows[0] as { log_index: string; wrapped_key: Buffer | null; epoch_id: string | null; kms_key_id: string | null; shredded_at: Date | null } | undefined;
  return row && { logIndex: Number(row.log_index), wrappedKey: row.wrapped_key, epochId: row.epoch_id, kmsKeyId: row.kms_key_id, shreddedAt: row.shredded_at };
}

/**
 * The plaintext payment method JSON of `row` (the caller zeroes it). DATA_SHREDDED when its key
 * material is gone; INTEGRITY_FAILURE when its data key row is missing; errors of the keyring
 * (KMS_UNAVAILABLE, INTEGRITY_FAILURE) pass through.
 */
export async function openRecord(database: AppDatabase, recordKeys: RecordKeyring, row: TransactionRecord): Promise<Buffer> {
  return await openRecordWith(recordKeys, row, await readDataKey(database, row.logIndex));
}

/** `openRecord` with the record's `data_keys` row already read (`readDataKey`); same contract. */
export async function openRecordWith(recordKeys: RecordKeyring, row: TransactionRecord, key: DataKeyRow | undefined): Promise<Buffer> {
  if (!key || key.logIndex !== row.logIndex) throw new PaylogError('INTEGRITY_FAILURE', 'the data key of this record is no longer available');
  if (key.wrappedKey === null || key.shreddedAt !== null) throw new PaylogError('DATA_SHREDDED', 'the card data of this transaction has been shredded');
  const env = row.envelope;
  return await recordKeys.open(
    {
      version: env.version,
      keyRef: env.key,
      salt: env.salt,
      iv: env.iv,
      ciphertext: env.ciphertext,
      tag: env.tag,
      keyCommitment: env.keyCommitment,
      wrappedKey: key.wrappedKey,
      stored: { kmsKeyId: key.kmsKeyId, epochId: key.epochId },
    },
    { transactionId: row.transactionId, processor: row.view.processor },
  );
}

/** What a granted access entry (release, forward) requires not to be shredded when it commits. */
export function keyMaterialOf(transactionId: string, key: { epochId: string } | object): { transactionId: string; epochId?: string } {
  return 'epochId' in key ? { transactionId, epochId: key.epochId } : { transactionId };
}
