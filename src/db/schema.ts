/**
 * Database schema (drizzle-orm), one file per kind of table under src/db/schema/. Migrations in
 * `drizzle/` are generated from this file (which re-exports them) with
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
export { bytea } from './schema/columns.js';
export * from './schema/log.js';
export * from './schema/keys.js';
export * from './schema/services.js';
