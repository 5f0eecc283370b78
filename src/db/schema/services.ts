/**
 * The services' mutable tables: the probe limit, held CVCs, processors, revocations, forward
 * destinations and the forward ledger.
 */
import { sql } from 'drizzle-orm';
import { bigint, index, json, jsonb, pgTable, primaryKey, text, timestamp, uuid } from 'drizzle-orm/pg-core';
import { bytea, createdAt } from './columns.js';

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
 * done), the log indexes of its entries and the masked answer a retry receives (migration 0010),
 * as `json`, which keeps the text as written, U+0000 and unpaired surrogate escapes included
 * (jsonb refuses them; migration 0028, src/services/forward/ledger.ts).
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
    answer: json('answer'),
    startedAt: timestamp('started_at', { withTimezone: true, mode: 'date' }).notNull().default(sql`now()`),
  },
  (t) => [primaryKey({ columns: [t.transactionId, t.idempotencyKey] })],
);
