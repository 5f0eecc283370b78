/**
 * Opening a stored record's payment method in memory: the one path release and forward take
 * (the data key row, then the record keyring). Nothing here logs or returns anything: callers
 * MUST commit their access entry before any of the plaintext leaves the process, and zero it.
 */
import { eq } from 'drizzle-orm';
import type { AppDatabase } from '../db/connection.js';
import { dataKeys } from '../db/schema.js';
import { PaylogError } from '../errors.js';
import type { RecordKeyring } from '../keys/record-keys.js';
import type { TransactionRecord } from './transaction-record.js';

/** The `data_keys` row of a record, as `openRecordWith` needs it (undefined: no row). */
export type DataKeyRow = typeof dataKeys.$inferSelect;

/** Reads the `data_keys` row of the record at `logIndex` (one query; a forward reads it beside its other first reads: src/services/forward/first-reads.ts). */
async function readDataKey(database: AppDatabase, logIndex: number): Promise<DataKeyRow | undefined> {
  return (await database.db.select().from(dataKeys).where(eq(dataKeys.logIndex, logIndex)).limit(1))[0];
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
