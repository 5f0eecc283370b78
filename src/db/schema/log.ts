/**
 * The log's tables: append-only (UPDATE/DELETE/TRUNCATE refused by `ENABLE ALWAYS` triggers;
 * a merkle_nodes row is removed only once its full tile reproduces it, migration 0012).
 */
import { bigint, index, jsonb, pgTable, primaryKey, smallint, text, timestamp } from 'drizzle-orm/pg-core';
import { bytea, createdAt } from './columns.js';

/**
 * One row per log entry; `leaf` holds the exact leaf bytes (RFC 9162 §2.1.1 input).
 * `entry_type` / `transaction_id` are filled only by rows written before leaf format v2 and are
 * read by nothing: kind and transaction come from the leaf itself.
 */
export const logEntries = pgTable('log_entries', {
  idx: bigint('idx', { mode: 'number' }).primaryKey(),
  entryType: text('entry_type'),
  transactionId: text('transaction_id'),
  leaf: bytea('leaf').notNull(),
  /** Insert time on rows from before migration 0021; NULL since (read by nothing: served times come from the leaf). */
  createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }),
});

/**
 * Hashes of every complete aligned subtree: node (level, idx) covers leaves
 * [idx·2^level, (idx+1)·2^level). Level 0 holds the leaf hashes. Proofs read O(log n) rows.
 */
export const merkleNodes = pgTable(
  'merkle_nodes',
  {
    level: smallint('level').notNull(),
    idx: bigint('idx', { mode: 'number' }).notNull(),
    hash: bytea('hash').notNull(),
  },
  (t) => [primaryKey({ columns: [t.level, t.idx] })],
);

/**
 * Full C2SP tlog-tiles hash tiles (migration 0012): tile (level, idx) = the 256 hashes of nodes
 * (8·level, idx·256 …) concatenated. Written only by `paylog_compact_tile`, which then removes
 * the merkle_nodes rows the tile reproduces (src/log/tiles/compact.ts); readers take a node from
 * its row, else from its tile (src/log/store.ts).
 */
export const merkleTiles = pgTable(
  'merkle_tiles',
  {
    level: smallint('level').notNull(),
    idx: bigint('idx', { mode: 'number' }).notNull(),
    hashes: bytea('hashes').notNull(),
  },
  (t) => [primaryKey({ columns: [t.level, t.idx] })],
);

/**
 * One row per committed batch: the tree size and root after it. `mac` = HMAC under a key only
 * the service holds (src/log/tree-head.ts); rows without a valid one are not trusted (rows from
 * before the column existed are trusted only up to the first MAC'd row).
 */
export const treeHeads = pgTable('tree_heads', {
  size: bigint('size', { mode: 'number' }).primaryKey(),
  rootHash: bytea('root_hash').notNull(),
  mac: bytea('mac'),
  /** Insert time on rows from before migration 0021; NULL since (read by nothing). */
  createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }),
});

/**
 * Lookup row of one transaction: id → log index, and the idempotency MAC (outside the tree, see
 * SECURITY.md). From issue 17 on, rows also carry `processor` (authorization before the leaf is
 * decoded) and `fingerprint` (v2, `fp2_…`: never in a leaf, served only to the processor). `request_mac`: 16 bytes on rows
 * since migration 0018's release (src/services/transaction-seal.ts), 32 before. With leaf format v2 the record itself (served view and ciphertext) is the leaf;
 * the other columns are filled only by rows written before v2 (format v1 records).
 */
export const transactions = pgTable('transactions', {
  /**
   * Unique: since migration 0027 by the exclusion constraint `transactions_transaction_id_unique`
   * (`EXCLUDE USING hash (transaction_id WITH =) WITH (fillfactor = 100)`: a hash index, 4 bytes
   * per row instead of the id; drizzle has no exclusion constraints, so it is declared only in
   * the migration). A duplicate is refused with SQLSTATE 23P01; lookups by `=` / `= ANY` use it.
   */
  transactionId: text('transaction_id').notNull(),
  /** Primary key since migration 0027 (before: the unique `transactions_log_index_unique`). */
  logIndex: bigint('log_index', { mode: 'number' }).primaryKey(),
  requestMac: bytea('request_mac').notNull(),
  processor: text('processor'),
  paymentMethodType: text('payment_method_type'),
  masked: jsonb('masked'),
  fingerprint: text('fingerprint'),
  amountValue: bigint('amount_value', { mode: 'number' }),
  currency: text('currency'),
  metadata: jsonb('metadata'),
  envelopeVersion: smallint('envelope_version'),
  iv: bytea('iv'),
  ciphertext: bytea('ciphertext'),
  tag: bytea('tag'),
  keyCommitment: bytea('key_commitment'),
  salt: bytea('salt'),
  /** Insert time: written since migration 0024 only for records whose data key a KMS key wraps (retention selects them by it); others take their time from the leaf. */
  createdAt: timestamp('created_at', { withTimezone: true, mode: 'date' }),
  /** The v2 fingerprint's 16 bytes, served as `fp2_` + base64url (rows since migration 0019; earlier rows hold `fp2_…` in `fingerprint`). */
  fingerprintV2: bytea('fingerprint_v2'),
});

/**
 * Access entries (PCI DSS 10.2.2 fields): lookup row (transaction → log index) of every release
 * and every refused attempt. What is served comes from the leaf; the other columns are filled
 * only by rows written before leaf format v2.
 */
export const accessEntries = pgTable(
  'access_entries',
  {
    logIndex: bigint('log_index', { mode: 'number' }).primaryKey(),
    transactionId: text('transaction_id').notNull(),
    principalRole: text('principal_role'),
    principalName: text('principal_name'),
    certificateFingerprint: text('certificate_fingerprint'),
    action: text('action'),
    purpose: text('purpose'),
    reference: text('reference'),
    outcome: text('outcome'),
    sourceAddress: text('source_address'),
    createdAt: createdAt(),
  },
  (t) => [index('access_entries_transaction_id_idx').on(t.transactionId)],
);

/** Signed checkpoints (C2SP signed-note text), every one kept. */
export const checkpoints = pgTable(
  'checkpoints',
  {
    id: bigint('id', { mode: 'number' }).primaryKey().generatedAlwaysAsIdentity(),
    size: bigint('size', { mode: 'number' }).notNull(),
    rootHash: bytea('root_hash').notNull(),
    note: text('note').notNull(),
    createdAt: createdAt(),
  },
  (t) => [index('checkpoints_size_idx').on(t.size)],
);

/**
 * Witness cosignatures (C2SP tlog-cosignature lines) collected for signed checkpoints, every one
 * kept (append-only). A row is used only if its line verifies under a configured witness key
 * over the checkpoint note signed by our own keys.
 */
export const witnessCosignatures = pgTable(
  'witness_cosignatures',
  {
    id: bigint('id', { mode: 'number' }).primaryKey().generatedAlwaysAsIdentity(),
    checkpointSize: bigint('checkpoint_size', { mode: 'number' }).notNull(),
    rootHash: bytea('root_hash').notNull(),
    /** `<witness name>+<hex key ID>` (tlog-cosignature key ID, type 0x04). */
    witnessKey: text('witness_key').notNull(),
    /** The cosignature's own timestamp (POSIX seconds, from the signed message). */
    cosignedAt: bigint('cosigned_at', { mode: 'number' }).notNull(),
    /** The exact signature line, without its newline. */
    signatureLine: text('signature_line').notNull(),
    createdAt: createdAt(),
  },
  (t) => [index('witness_cosignatures_size_idx').on(t.checkpointSize)],
);

export const LOG_TABLES = [
  'log_entries',
  'merkle_nodes',
  'merkle_tiles',
  'tree_heads',
  'transactions',
  'access_entries',
  'checkpoints',
  'witness_cosignatures',
] as const;
