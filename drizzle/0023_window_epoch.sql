-- paylog: a key-wrap window's epoch stored once, on its key_wrap_windows row (issue 20, storage). Hand-written.
-- Every record of a window is wrapped to the same epoch's public key (the window's enc is one
-- HPKE encapsulation to it), so the epoch id moves to the window: data_keys rows written with a
-- window_id leave epoch_id NULL (about 17 bytes of row each), and the service reads a record's
-- epoch as coalesce(data_keys.epoch_id, key_wrap_windows.epoch_id) (src/services/transaction-
-- queries.ts `epochIdSql`). Rows from before keep their epoch_id (nothing is rewritten; windows
-- from before get theirs from their rows, below). The column is nullable so that a service rolled
-- back to before this migration still inserts its windows (it then writes the epoch on each row,
-- as before); a window row with neither can only make its records fail to open (no epoch: the
-- keyring refuses), never open under another epoch's key than their leaf names.
ALTER TABLE "key_wrap_windows" ADD COLUMN IF NOT EXISTS "epoch_id" text REFERENCES "key_epochs"("epoch_id");
--> statement-breakpoint
UPDATE key_wrap_windows w SET epoch_id = (SELECT d.epoch_id FROM data_keys d WHERE d.window_id = w.id AND d.epoch_id IS NOT NULL LIMIT 1) WHERE w.epoch_id IS NULL;
--> statement-breakpoint
-- Exactly one key reference: a v1 KMS key, or an epoch (on the row, or through its window).
ALTER TABLE "data_keys" DROP CONSTRAINT IF EXISTS "data_keys_key_ref";
--> statement-breakpoint
ALTER TABLE "data_keys" ADD CONSTRAINT "data_keys_key_ref" CHECK (("kms_key_id" IS NULL) <> ("epoch_id" IS NULL AND "window_id" IS NULL));
--> statement-breakpoint
-- Windows are epoch (v2) only (was: a window row names its epoch).
ALTER TABLE "data_keys" DROP CONSTRAINT IF EXISTS "data_keys_window_epoch";
--> statement-breakpoint
ALTER TABLE "data_keys" ADD CONSTRAINT "data_keys_window_epoch" CHECK ("window_id" IS NULL OR "kms_key_id" IS NULL);
--> statement-breakpoint
-- An epoch's records (the key reports count them) are found by data_keys.epoch_id (rows without
-- a window) or by their windows: the first index now holds only the rows that name an epoch.
DROP INDEX IF EXISTS "data_keys_epoch_id_idx";
--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "data_keys_epoch_id_idx" ON "data_keys" ("epoch_id") WHERE "epoch_id" IS NOT NULL;
--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "data_keys_window_id_idx" ON "data_keys" ("window_id") WHERE "window_id" IS NOT NULL;
--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "key_wrap_windows_epoch_id_idx" ON "key_wrap_windows" ("epoch_id");
