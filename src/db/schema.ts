/**
 * Database schema (drizzle-orm). Migrations in `drizzle/` are generated from this file with
 * `npm run db:generate`; roles, grants and the append-only triggers live in a hand-written
 * migration beside them.
 *
 * Log tables (append-only; UPDATE/DELETE/TRUNCATE refused by `ENABLE ALWAYS` triggers):
 *   log_entries, merkle_nodes (a row is removed only once its full tile reproduces it, migration
 *   0012), merkle_tiles, tree_heads, transactions, access_entries, checkpoints,
 *   witness_cosignatures.
 * Mutable tables beside the log: data_keys (wrapped data keys — rewrap and crypto-shredding
 * replace or delete them without touching any leaf; key_wrap_windows holds the HPKE enc their window-form
 * rows share, INSERT-only by grants), keyring, cse_keys (client-side encryption
 * keys; retention destroys them), processors, revoked_certificates, submission_probe_slots (the
 * probe limit; expired rows deleted), card_security_codes / cvc_holder_keys / cvc_destructions (held
 * CVCs sealed to in-memory keys, their public keys, destruction counts: src/cvc/, migration 0011).
 */
import { sql } from 'drizzle-orm';
import {
  bigint,
  customType,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  smallint,
  text,
  timestamp,
  unique,
  uuid,
} from 'drizzle-orm/pg-core';

/** PostgreSQL `bytea` as a Node Buffer. */
export const bytea = customType<{ data: Buffer; driverData: Buffer }>({
  dataType() {
    return 'bytea';
  },
});

const createdAt = () => timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull().default(sql`now()`);

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

/** Wrapped data keys, beside the log so rewrap/shredding never alter a leaf; keyed by the record's log index (migration 0018). */
export const dataKeys = pgTable(
  'data_keys',
  {
    logIndex: bigint('log_index', { mode: 'number' }).primaryKey().references(() => transactions.logIndex),
    /** The key-wrap window whose `enc` precedes `wrapped_key` (rows since migration 0018; NULL: `wrapped_key` is whole). */
    windowId: bigint('window_id', { mode: 'bigint' }).references(() => keyWrapWindows.id),
    /** Wrapped data key (or, with `window_id`, what follows the window's enc); NULL once shredded. */
    wrappedKey: bytea('wrapped_key'),
    /** Envelope v2: the key epoch whose public key wrapped the data key (exactly one of kmsKeyId / epoch); NULL on window rows since migration 0023 (the window's `epoch_id` then). */
    epochId: text('epoch_id').references(() => keyEpochs.epochId),
    /** Envelope v1: the KMS key that wrapped the data key. */
    kmsKeyId: text('kms_key_id'),
    shreddedAt: timestamp('shredded_at', { withTimezone: true, mode: 'date' }),
  },
  (t) => [
    index('data_keys_epoch_id_idx').on(t.epochId).where(sql`${t.epochId} IS NOT NULL`),
    index('data_keys_window_id_idx').on(t.windowId).where(sql`${t.windowId} IS NOT NULL`),
  ],
);

/** A key-wrap window's HPKE `enc`, once instead of in each of its records' rows (migration 0018); id = SHA-256(enc)[:8]; `epoch_id`: the epoch it wraps to (migration 0023; its rows then leave theirs NULL). */
export const keyWrapWindows = pgTable(
  'key_wrap_windows',
  {
    id: bigint('id', { mode: 'bigint' }).primaryKey(),
    enc: bytea('enc').notNull(),
    epochId: text('epoch_id').references(() => keyEpochs.epochId),
  },
  (t) => [index('key_wrap_windows_epoch_id_idx').on(t.epochId)],
);

/**
 * Key epochs (envelope v2; migration 0002): one X25519 key pair per processor × period ×
 * generation. The private key is stored only wrapped by the period's KMS key, and destroyed
 * (NULL, `shredded_at` set) by crypto-shredding.
 */
export const keyEpochs = pgTable('key_epochs', {
  epochId: text('epoch_id').primaryKey(),
  processor: text('processor').notNull(),
  granularity: text('granularity').notNull(),
  periodStart: timestamp('period_start', { withTimezone: true, mode: 'date' }).notNull(),
  periodEnd: timestamp('period_end', { withTimezone: true, mode: 'date' }).notNull(),
  generation: integer('generation').notNull(),
  publicKey: bytea('public_key').notNull(),
  kmsKeyId: text('kms_key_id'),
  wrappedPrivateKey: bytea('wrapped_private_key'),
  wrappedKeySha256: bytea('wrapped_key_sha256'),
  retiredAt: timestamp('retired_at', { withTimezone: true, mode: 'date' }),
  shreddedAt: timestamp('shredded_at', { withTimezone: true, mode: 'date' }),
  /** HMAC over the epoch's immutable identity under a key only the service holds (src/kms/epoch-rows.ts); NULL on rows from before migration 0009. */
  mac: bytea('mac'),
  createdAt: createdAt(),
});

/**
 * Epochs that existed when migration 0009 added `key_epochs.mac` (written only by that
 * migration; the runtime role reads it): a row without a MAC is trusted only if listed here
 * with the same public key.
 */
export const legacyKeyEpochs = pgTable('paylog_legacy_key_epochs', {
  epochId: text('epoch_id').primaryKey(),
  publicKey: bytea('public_key').notNull(),
});

/** One KMS key per key period (granularity × period start); shredding schedules its deletion. */
export const keyPeriods = pgTable(
  'key_periods',
  {
    granularity: text('granularity').notNull(),
    periodStart: timestamp('period_start', { withTimezone: true, mode: 'date' }).notNull(),
    periodEnd: timestamp('period_end', { withTimezone: true, mode: 'date' }).notNull(),
    kmsKeyId: text('kms_key_id').notNull(),
    state: text('state').notNull().default('active'),
    deletionDate: timestamp('deletion_date', { withTimezone: true, mode: 'date' }),
    createdAt: createdAt(),
  },
  (t) => [primaryKey({ columns: [t.granularity, t.periodStart] })],
);

/**
 * Every KMS key besides key_periods.kms_key_id that has wrapped a key period's epoch private
 * keys (migration 0007): rewrap targets (round >= 1, alias `...-r<round>`) and KMS-reported
 * sources of a rewrap. Written only by paylog_keys; retention schedules each for deletion.
 */
export const keyPeriodKmsKeys = pgTable(
  'key_period_kms_keys',
  {
    granularity: text('granularity').notNull(),
    periodStart: timestamp('period_start', { withTimezone: true, mode: 'date' }).notNull(),
    kmsKeyId: text('kms_key_id').notNull(),
    role: text('role').notNull(),
    round: integer('round'),
    rewrapRun: text('rewrap_run'),
    addedAt: timestamp('added_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.granularity, t.periodStart, t.kmsKeyId] }), unique().on(t.granularity, t.periodStart, t.round), index('key_period_kms_keys_key_idx').on(t.kmsKeyId)],
);

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

/** Service keys wrapped under KMS (e.g. the fingerprint HMAC key). */
export const keyring = pgTable('keyring', {
  name: text('name').primaryKey(),
  kmsKeyId: text('kms_key_id').notNull(),
  wrappedKey: bytea('wrapped_key').notNull(),
  createdAt: createdAt(),
});

/**
 * Client-side encryption keys (drizzle/0006_cse_key_destruction): the seed of each key, wrapped under the KMS key of
 * its own period (src/cse/keys.ts). `wrapped_seed` is NULL once retention destroyed the key.
 */
export const cseKeys = pgTable('cse_keys', {
  kid: text('kid').primaryKey(),
  periodStart: timestamp('period_start', { withTimezone: true, mode: 'date' }).notNull(),
  periodEnd: timestamp('period_end', { withTimezone: true, mode: 'date' }).notNull(),
  kmsKeyId: text('kms_key_id').notNull(),
  wrappedSeed: bytea('wrapped_seed'),
  destroyedAt: timestamp('destroyed_at', { withTimezone: true, mode: 'date' }),
  deletionDate: timestamp('deletion_date', { withTimezone: true, mode: 'date' }),
  createdAt: createdAt(),
});

/**
 * The probe limit (issue 17, migrations 0008/0013/0014/0022; src/services/probe-limit.ts): one row per
 * new transaction a principal submitted this hour: `grp` = (hour mod 256) << 56 | the low 56 bits
 * of SHA-256(principal ‖ 0 ‖ keyed MAC of its served payment fields)[:8] (`paylog_probe_key`),
 * `tx` = SHA-256(transactionId)[:16] as a uuid. Found by an index on `grp` alone; a row is unique
 * by the group's advisory lock in `paylog_probe_admit` (no unique index: it cost more than the
 * row). Not a log table: the runtime role inserts and deletes (past hours, `paylog_probe_purge`).
 */
export const submissionProbeSlots = pgTable(
  'submission_probe_slots',
  {
    grp: bigint('grp', { mode: 'bigint' }).notNull(),
    tx: uuid('tx').notNull(),
  },
  (t) => [index('submission_probe_slots_grp_idx').on(t.grp)],
);

/**
 * Card security codes held until authorization (issue 18, migration 0011; src/cvc/codes.ts):
 * `sealed` = {holder key id: base64(HPKE enc ‖ ciphertext)}, sealed to in-memory keys only.
 * The runtime role inserts, takes (DELETE … RETURNING) and expires rows; never updates them.
 */
export const cardSecurityCodes = pgTable(
  'card_security_codes',
  {
    transactionId: text('transaction_id').primaryKey(),
    sealed: jsonb('sealed').notNull(),
    expiresAt: timestamp('expires_at', { withTimezone: true, mode: 'date' }).notNull(),
    createdAt: createdAt(),
  },
  (t) => [index('card_security_codes_expiry_idx').on(t.expiresAt)],
);

/** Public halves of the paylog processes' CVC holder keys (src/cvc/holder-keys.ts), MACed. */
export const cvcHolderKeys = pgTable('cvc_holder_keys', {
  keyId: text('key_id').primaryKey(),
  publicKey: bytea('public_key').notNull(),
  notAfter: timestamp('not_after', { withTimezone: true, mode: 'date' }).notNull(),
  mac: bytea('mac').notNull(),
  createdAt: createdAt(),
});

/** CVC destructions per clock hour and cause; one `cvc_destroyed` leaf per period (src/cvc/destruction-log.ts). */
export const cvcDestructions = pgTable(
  'cvc_destructions',
  {
    periodStart: timestamp('period_start', { withTimezone: true, mode: 'date' }).notNull(),
    cause: text('cause').notNull(),
    count: bigint('count', { mode: 'number' }).notNull(),
    loggedAt: timestamp('logged_at', { withTimezone: true, mode: 'date' }),
  },
  (t) => [primaryKey({ columns: [t.periodStart, t.cause] })],
);

/** Registered payment processors (PCI DSS 7.2: need-to-know). */
export const processors = pgTable('processors', {
  name: text('name').primaryKey(),
  principalUri: text('principal_uri').notNull(),
  status: text('status').notNull().default('active'),
  createdAt: createdAt(),
});

/** Revoked principal certificates, checked on every request. */
export const revokedCertificates = pgTable('revoked_certificates', {
  fingerprint: text('fingerprint').primaryKey(),
  serial: text('serial'),
  reason: text('reason'),
  revokedBy: text('revoked_by').notNull(),
  createdAt: createdAt(),
});

/**
 * A processor's forward destinations (issue 18; migration 0010). Written only on the admin
 * connection (paylog_admin); used only while `config` (with the wrapped key's digest) hashes to
 * the `cfg` of the admin_event entry at `admin_log_index`.
 */
export const forwardDestinations = pgTable(
  'forward_destinations',
  {
    processor: text('processor').notNull(),
    name: text('name').notNull(),
    config: jsonb('config').notNull(),
    wrappedClientKey: bytea('wrapped_client_key'),
    adminLogIndex: bigint('admin_log_index', { mode: 'number' }).notNull(),
    createdAt: createdAt(),
  },
  (t) => [primaryKey({ columns: [t.processor, t.name] })],
);

/**
 * One forward per (transaction, Idempotency-Key): its request MAC, state (pending → sent →
 * done), the log indexes of its entries and the masked answer a retry receives (migration 0010).
 */
export const forwardRequests = pgTable(
  'forward_requests',
  {
    transactionId: text('transaction_id').notNull(),
    idempotencyKey: text('idempotency_key').notNull(),
    requestMac: bytea('request_mac').notNull(),
    state: text('state').notNull(),
    accessLogIndex: bigint('access_log_index', { mode: 'number' }),
    resultLogIndex: bigint('result_log_index', { mode: 'number' }),
    answer: jsonb('answer'),
    startedAt: timestamp('started_at', { withTimezone: true, mode: 'date' }).notNull().default(sql`now()`),
  },
  (t) => [primaryKey({ columns: [t.transactionId, t.idempotencyKey] })],
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
