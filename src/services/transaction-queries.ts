/**
 * The SQL of the transaction service: the reads of the `transactions` lookup rows (and the
 * `processors`, `key_epochs`, `data_keys` and `log_entries` rows they join) that submission and
 * reads need. The append path (src/log/append/pg-driver.ts) is the only writer of these rows.
 *
 * Contracts:
 * - Read-only: these functions MUST NOT write. Each is ONE round trip, a named prepared statement.
 * - They return rows as stored: nothing here is trusted or decoded (a record is checked against
 *   its leaf by src/services/transaction-record.ts; the caller decides on the answers).
 */
import type { AppDatabase } from '../db/connection.js';
import type { EpochGranularity } from '../kms/epoch-names.js';
import type { TransactionRow } from './transaction-record.js';

type Pool = AppDatabase['pool'];

/**
 * The columns of a {@link TransactionRow}, from `transactions t` and its leaf `log_entries e`
 * (also read, beside other rows, by the forward's first read: src/services/forward/first-reads.ts).
 */
/**
 * A record's whole wrapped data key, from its `data_keys` row (alias `d`) and its window row
 * (alias `w`: `LEFT JOIN key_wrap_windows w ON w.id = d.window_id`): the window's enc ‖ the
 * row's bytes for rows since migration 0018, else the row's bytes; NULL once shredded. What
 * the leaf's `wk` hashes: the one place the stored form is put back together.
 */
export function wrappedKeySql(d: string, w: string): string {
  return `CASE WHEN ${d}.window_id IS NULL THEN ${d}.wrapped_key ELSE ${w}.enc || ${d}.wrapped_key END`;
}

/**
 * The epoch of the `data_keys` row `d` (joined to its window `w` as for {@link wrappedKeySql}):
 * the row's own `epoch_id`, else — window rows since migration 0023 — its window's. NULL for v1
 * (KMS) rows.
 */
export function epochIdSql(d: string, w: string): string {
  return `coalesce(${d}.epoch_id, ${w}.epoch_id)`;
}

/** How many records the epoch `epochId` (an SQL expression) wrapped: rows naming it, and rows of its windows (indexes of migration 0023). */
export function epochRecordCountSql(epochId: string): string {
  return `((SELECT count(*) FROM data_keys d WHERE d.epoch_id = ${epochId})
    + (SELECT count(*) FROM key_wrap_windows w JOIN data_keys d ON d.window_id = w.id WHERE w.epoch_id = ${epochId} AND d.epoch_id IS NULL))::int`;
}

export const TRANSACTION_RECORD_COLUMNS = `t.transaction_id, t.log_index, t.request_mac, t.processor, t.payment_method_type, t.masked,
    t.fingerprint, t.fingerprint_v2, t.amount_value, t.currency, t.metadata, t.envelope_version, t.iv, t.ciphertext, t.tag,
    t.key_commitment, t.salt, t.created_at, e.leaf`;

const SELECT_RECORD = `SELECT ${TRANSACTION_RECORD_COLUMNS}
  FROM transactions t LEFT JOIN log_entries e ON e.idx = t.log_index WHERE t.transaction_id = $1`;

/** The lookup row of `transactionId` with its leaf, or undefined. */
export async function readTransactionRow(pool: Pool, transactionId: string): Promise<TransactionRow | undefined> {
  const r = await pool.query({ name: 'paylog_tx_record', text: SELECT_RECORD, values: [transactionId] });
  return r.rows[0] as TransactionRow | undefined;
}

/** The submission pre-check's answer (see {@link readSubmissionPrecheck}). */
interface SubmissionPrecheck {
  processor_status: string | null;
  transaction_id: string | null;
  epoch_id?: string | null;
}

/**
 * One round trip: is the processor active, and was this id submitted before? With
 * `epochGranularity` (hierarchical mode) the same round trip reads the processor's current epoch
 * id at `now`.
 */
export async function readSubmissionPrecheck(
  pool: Pool,
  q: { processor: string; transactionId: string; epochGranularity?: EpochGranularity | undefined; now: Date },
): Promise<SubmissionPrecheck> {
  const pre = await pool.query(
    q.epochGranularity !== undefined
      ? {
          name: 'paylog_submit_precheck_epoch',
          text: `SELECT (SELECT status FROM processors WHERE name = $1) AS processor_status, t.transaction_id,
                   (SELECT e.epoch_id FROM key_epochs e WHERE e.processor = $1 AND e.granularity = $3 AND e.period_start <= $4
                      AND e.period_end > $4 AND e.retired_at IS NULL AND e.shredded_at IS NULL ORDER BY e.generation DESC LIMIT 1) AS epoch_id
                 FROM (SELECT 1) AS one LEFT JOIN transactions t ON t.transaction_id = $2`,
          values: [q.processor, q.transactionId, q.epochGranularity, q.now],
        }
      : {
          name: 'paylog_submit_precheck',
          text: `SELECT (SELECT status FROM processors WHERE name = $1) AS processor_status, t.transaction_id
                 FROM (SELECT 1) AS one LEFT JOIN transactions t ON t.transaction_id = $2`,
          values: [q.processor, q.transactionId],
        },
  );
  return pre.rows[0] as SubmissionPrecheck;
}

/**
 * In one query of two small rows: the standing of processor `principalName`, and the processor
 * `transactionId` is assigned to (the row's column, else its key epoch's processor), with the
 * leaf only when neither names one (per-transaction v2 rows). Undefined: no answer row.
 */
export async function readAssignment(
  pool: Pool,
  transactionId: string,
  principalName: string,
): Promise<{ standing: string | null; processor: string | null; leaf: Buffer | null } | undefined> {
  const r = await pool.query({
    name: 'paylog_tx_assigned_processor',
    text: `SELECT (SELECT status FROM processors WHERE name = $2) AS standing, coalesce(t.processor, ke.processor) AS processor,
             (SELECT e.leaf FROM log_entries e WHERE e.idx = t.log_index AND t.processor IS NULL AND ke.processor IS NULL) AS leaf
           FROM (SELECT 1) AS one
           LEFT JOIN transactions t ON t.transaction_id = $1
           LEFT JOIN data_keys dk ON dk.log_index = t.log_index
           LEFT JOIN key_wrap_windows dkw ON dkw.id = dk.window_id
           LEFT JOIN key_epochs ke ON ke.epoch_id = ${epochIdSql('dk', 'dkw')}`,
    values: [transactionId, principalName],
  });
  return r.rows[0] as { standing: string | null; processor: string | null; leaf: Buffer | null } | undefined;
}

/** Whether the record's data key, or its epoch's private key, has been destroyed (no data key row: true). */
export async function readShredded(pool: Pool, transactionId: string): Promise<boolean> {
  const r = await pool.query({
    name: 'paylog_is_shredded',
    text: `SELECT (dk.wrapped_key IS NULL OR dk.shredded_at IS NOT NULL OR e.shredded_at IS NOT NULL) AS shredded
           FROM transactions t JOIN data_keys dk ON dk.log_index = t.log_index LEFT JOIN key_wrap_windows dkw ON dkw.id = dk.window_id
           LEFT JOIN key_epochs e ON e.epoch_id = ${epochIdSql('dk', 'dkw')} WHERE t.transaction_id = $1`,
    values: [transactionId],
  });
  return (r.rows[0] as { shredded: boolean } | undefined)?.shredded ?? true;
}
