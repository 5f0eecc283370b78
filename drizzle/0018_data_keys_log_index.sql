-- paylog: data_keys keyed by the record's log index (issue 20, storage). Hand-written.
-- The primary key was the client-chosen transaction_id (text, ≤ 64 characters): about 71 bytes
-- of random-order btree and ~20 of heap per record. A record's log index (bigint) identifies it
-- as well — the transactions row maps transaction_id → log_index one to one (its primary key
-- and `transactions_log_index_unique`) — and log indexes grow, so the btree fills its pages.
-- The table is rebuilt as (log_index, window_id, wrapped_key, epoch_id, kms_key_id,
-- shredded_at): the fixed-width columns first (no alignment padding), the always-NULL
-- created_at (migration 0016) dropped.
--
-- Key-wrap windows (SECURITY.md "Key-wrap windows"): a window-form wrapped key is
-- enc (32) ‖ u32be(seq) ‖ ct (48), and every record of a window repeats the same enc. New rows
-- store the enc once, in key_wrap_windows (id = SHA-256(enc)[:8] as a bigint), and the rest
-- (seq ‖ ct, 52 bytes) in their own row with `window_id`; a reader puts enc ‖ rest back
-- together, byte for byte what the leaf's `wk` hashes. The record's own row still holds the
-- only copy of its ct, so shredding it (wrapped_key = NULL) destroys the record's data key as
-- before; the enc alone opens nothing. Rows from before keep their whole wrapped key
-- (window_id NULL). key_wrap_windows is written by the runtime role (INSERT only: a window's
-- enc never changes) and read by every role that reads data_keys.
--
-- Nothing an existing row says changes: the same wrapped key, the same key reference, the same
-- shred state, the same foreign keys (now log_index → transactions.log_index), the same check,
-- the same grants (runtime role: SELECT, INSERT; key role: SELECT and UPDATE of kms_key_id,
-- wrapped_key, shredded_at only; auditor: SELECT). A service from before this migration cannot
-- insert into it (it names transaction_id): upgrade, do not roll back across it.
CREATE TABLE IF NOT EXISTS "key_wrap_windows" (
	"id" bigint PRIMARY KEY NOT NULL,
	"enc" bytea NOT NULL
);
--> statement-breakpoint
REVOKE ALL ON key_wrap_windows FROM PUBLIC;
--> statement-breakpoint
GRANT SELECT, INSERT ON key_wrap_windows TO paylog_app;
--> statement-breakpoint
GRANT SELECT ON key_wrap_windows TO paylog_keys, paylog_auditor;
--> statement-breakpoint
CREATE TABLE "data_keys_v3" (
	"log_index" bigint NOT NULL,
	"window_id" bigint,
	"wrapped_key" bytea,
	"epoch_id" text,
	"kms_key_id" text,
	"shredded_at" timestamp with time zone
);
--> statement-breakpoint
INSERT INTO data_keys_v3 (log_index, wrapped_key, epoch_id, kms_key_id, shredded_at)
  SELECT t.log_index, d.wrapped_key, d.epoch_id, d.kms_key_id, d.shredded_at
    FROM data_keys d JOIN transactions t ON t.transaction_id = d.transaction_id
   ORDER BY t.log_index;
--> statement-breakpoint
DROP TABLE "data_keys";
--> statement-breakpoint
ALTER TABLE "data_keys_v3" RENAME TO "data_keys";
--> statement-breakpoint
ALTER TABLE "data_keys" ADD CONSTRAINT "data_keys_pkey" PRIMARY KEY ("log_index");
--> statement-breakpoint
ALTER TABLE "data_keys" ADD CONSTRAINT "data_keys_log_index_transactions_log_index_fk" FOREIGN KEY ("log_index") REFERENCES "transactions"("log_index");
--> statement-breakpoint
ALTER TABLE "data_keys" ADD CONSTRAINT "data_keys_epoch_id_fkey" FOREIGN KEY ("epoch_id") REFERENCES "key_epochs"("epoch_id");
--> statement-breakpoint
ALTER TABLE "data_keys" ADD CONSTRAINT "data_keys_window_id_key_wrap_windows_id_fk" FOREIGN KEY ("window_id") REFERENCES "key_wrap_windows"("id");
--> statement-breakpoint
-- A window continues only an epoch's wrapped key.
ALTER TABLE "data_keys" ADD CONSTRAINT "data_keys_window_epoch" CHECK ("window_id" IS NULL OR "epoch_id" IS NOT NULL);
--> statement-breakpoint
ALTER TABLE "data_keys" ADD CONSTRAINT "data_keys_key_ref" CHECK (("kms_key_id" IS NULL) <> ("epoch_id" IS NULL));
--> statement-breakpoint
CREATE INDEX "data_keys_epoch_id_idx" ON "data_keys" ("epoch_id");
--> statement-breakpoint
REVOKE ALL ON data_keys FROM PUBLIC;
--> statement-breakpoint
GRANT SELECT, INSERT ON data_keys TO paylog_app;
--> statement-breakpoint
GRANT SELECT ON data_keys TO paylog_keys, paylog_auditor;
--> statement-breakpoint
GRANT UPDATE ("kms_key_id", "wrapped_key", "shredded_at") ON data_keys TO paylog_keys;
