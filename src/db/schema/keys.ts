/**
 * Key material beside the log: wrapped data keys (rewrap and crypto-shredding replace or delete
 * them without touching any leaf), key-wrap windows, KMS key epochs and periods, the service
 * keyring and client-side encryption keys.
 */
import { sql } from 'drizzle-orm';
import { bigint, index, integer, pgTable, primaryKey, text, timestamp, unique } from 'drizzle-orm/pg-core';
import { bytea, createdAt } from './columns.js';
import { transactions } from './log.js';

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
