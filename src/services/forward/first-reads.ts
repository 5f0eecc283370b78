/**
 * A forward's first reads, in ONE statement (one round trip, one statement for PostgreSQL to
 * parse and run): the claim of the Idempotency-Key in the ledger, the principal's revocation,
 * the record's `transactions` row with its leaf, its `data_keys` row, the stored row of the named
 * destination of the processor the record's row names (with its admin event's leaf), and the
 * access entries of the transaction (for "was this key granted before?").
 *
 * Contract:
 * - The claim is the ledger's (src/services/forward/ledger.ts `claim`): an INSERT of a `pending`
 *   row that does nothing on conflict, committed asynchronously (it is the only write of the
 *   statement, and the ledger's rows are written that way: the LOG keeps a forward from being
 *   sent twice). No MAC (the request did not parse): nothing is claimed.
 * - Every read is as the module that owns it reads it alone (revocation: src/auth/revocations.ts;
 *   record columns: src/services/transaction-queries.ts; granted keys: ./history.ts `grantedIn`);
 *   nothing read here is trusted: the record is checked against its leaf, the destination
 *   against its admin event (DestinationService.verified), the data key by opening the record.
 * - It runs with one kept generic plan per connection that never scans a table it can look up
 *   by index (src/db/plans.ts): planned afresh, planning took ~0.6 ms of a ~0.75 ms statement.
 * - A record that fails its leaf check is reported (`record.ok === false`), not thrown: the
 *   caller logs the refusal.
 */
import type { AppDatabase } from '../../db/connection.js';
import { queryKeepingIndexPlans } from '../../db/plans.js';
import { revokedCertificateSql } from '../../auth/revocations.js';
import { epochIdSql, TRANSACTION_RECORD_COLUMNS, wrappedKeySql } from '../transaction-queries.js';
import { recordFromRow, type TransactionRecord, type TransactionRow } from '../transaction-record.js';
import type { DataKeyRow } from '../open-record.js';
import type { DestinationRow } from './destinations.js';
import { grantedIn, type GrantedKey } from './history.js';

const FIRST_READS = `
WITH claim AS (
  INSERT INTO forward_requests (transaction_id, idempotency_key, request_mac, state)
  SELECT $1::text, $2::text, $3::bytea, 'pending' FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit
  WHERE $3::bytea IS NOT NULL
  ON CONFLICT DO NOTHING RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM claim) AS claimed,
  ($4::text IS NOT NULL AND ${revokedCertificateSql('$4::text', '$5::text')}) AS revoked,
  ${TRANSACTION_RECORD_COLUMNS},
  dk.log_index AS dk_log_index, dk.kms_key_id AS dk_kms_key_id, ${wrappedKeySql('dk', 'dkw')} AS dk_wrapped_key,
  ${epochIdSql('dk', 'dkw')} AS dk_epoch_id, dk.shredded_at AS dk_shredded_at,
  d.processor AS d_processor, d.name AS d_name, d.config AS d_config, d.wrapped_client_key AS d_wrapped_client_key,
  d.admin_log_index AS d_admin_log_index, de.leaf AS d_leaf,
  g.log_indexes AS granted_log_indexes, g.leaves AS granted_leaves
FROM (SELECT 1) AS one
LEFT JOIN transactions t ON t.transaction_id = $1
LEFT JOIN log_entries e ON e.idx = t.log_index
LEFT JOIN data_keys dk ON dk.log_index = t.log_index
LEFT JOIN key_wrap_windows dkw ON dkw.id = dk.window_id
LEFT JOIN forward_destinations d ON d.name = $6::text AND d.processor = t.processor
LEFT JOIN log_entries de ON de.idx = d.admin_log_index
LEFT JOIN LATERAL (
  SELECT array_agg(a.log_index ORDER BY a.log_index) AS log_indexes, array_agg(ae.leaf ORDER BY a.log_index) AS leaves
  FROM access_entries a JOIN log_entries ae ON ae.idx = a.log_index WHERE a.transaction_id = $1
) g ON true`;

type Row = TransactionRow & {
  claimed: boolean;
  revoked: boolean;
  dk_log_index: string | null;
  dk_kms_key_id: string | null;
  dk_wrapped_key: Buffer | null;
  dk_epoch_id: string | null;
  dk_shredded_at: Date | null;
  d_processor: string | null;
  d_name: string;
  d_config: DestinationRow['config'];
  d_wrapped_client_key: Buffer | null;
  d_admin_log_index: string;
  d_leaf: Buffer | null;
  granted_log_indexes: string[] | null;
  granted_leaves: Buffer[] | null;
};

/** What the first read found. */
interface FirstReads {
  /** This attempt inserted the ledger row of its key (false: another row holds it, or no MAC). */
  claimed: boolean;
  /** The principal's certificate is revoked (false when not asked). */
  revoked: boolean;
  /** The record (null: no such transaction), or the error of its leaf check. */
  record: { ok: true; value: TransactionRecord | null } | { ok: false; error: unknown };
  dataKey: DataKeyRow | undefined;
  /** The stored row of the named destination of the row's processor, unverified (null: none). */
  destination: DestinationRow | null;
  /** The granted forward access entry with this key, if the log holds one. */
  granted: GrantedKey | null;
}

/**
 * The first reads of a forward of `transactionId` with Idempotency-Key `key` (see the module
 * contract). `mac`: the request's MAC to claim the key with; `destination`: the destination
 * name asked for; `principal`: the certificate whose revocation is read (omitted: not read).
 */
export async function readFirst(
  database: AppDatabase,
  macKey: Buffer,
  q: { transactionId: string; key: string; mac?: Buffer | undefined; destination?: string | undefined; principal?: { certificateFingerprint: string; serialHex: string } | undefined },
): Promise<FirstReads> {
  const r = await queryKeepingIndexPlans(database, {
    name: 'paylog_forward_first_reads',
    text: FIRST_READS,
    values: [q.transactionId, q.key, q.mac ?? null, q.principal?.certificateFingerprint ?? null, q.principal?.serialHex ?? null, q.destination ?? null],
  });
  const row = r.rows[0] as Row;
  let record: FirstReads['record'];
  try {
    record = { ok: true, value: row.transaction_id === null ? null : recordFromRow(row) };
  } catch (error) {
    record = { ok: false, error };
  }
  const dataKey: DataKeyRow | undefined =
    row.dk_log_index === null
      ? undefined
      : { logIndex: Number(row.dk_log_index), kmsKeyId: row.dk_kms_key_id, wrappedKey: row.dk_wrapped_key, epochId: row.dk_epoch_id, shreddedAt: row.dk_shredded_at };
  const destination: DestinationRow | null =
    row.d_processor === null
      ? null
      : { processor: row.d_processor, name: row.d_name, config: row.d_config, wrapped_client_key: row.d_wrapped_client_key, admin_log_index: row.d_admin_log_index, leaf: row.d_leaf };
  const indexes = row.granted_log_indexes ?? [];
  const leaves = row.granted_leaves ?? [];
  const granted = grantedIn(
    indexes.map((log_index, i) => ({ log_index, leaf: leaves[i]! })),
    macKey,
    q.transactionId,
    q.key,
  );
  return { claimed: row.claimed, revoked: row.revoked, record, dataKey, destination, granted };
}
