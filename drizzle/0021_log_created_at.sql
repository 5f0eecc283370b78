-- paylog: log_entries.created_at and tree_heads.created_at no longer written (issue 20, storage). Hand-written.
-- Nothing reads either column: every served time comes from the leaf (SECURITY.md lists both as
-- "insert time, not served"), tree heads are read by size, and retention and reports use
-- transactions.created_at. New rows leave them NULL, which takes no byte (both rows already
-- carry a null bitmap: log_entries has the nullable entry_type / transaction_id, tree_heads the
-- nullable mac): 8 bytes per log entry and per tree head saved (their tuples are MAXALIGNed, so
-- the alignment padding before the timestamp went with it). The columns stay, nullable, so a
-- service rolled back to before this migration still inserts its rows (as 0016 did for
-- data_keys.created_at). ALTER COLUMN … DROP NOT NULL / DROP DEFAULT rewrite nothing, and the
-- append-only triggers only refuse UPDATE/DELETE/TRUNCATE of rows.
ALTER TABLE "log_entries" ALTER COLUMN "created_at" DROP DEFAULT;
--> statement-breakpoint
ALTER TABLE "log_entries" ALTER COLUMN "created_at" DROP NOT NULL;
--> statement-breakpoint
ALTER TABLE "tree_heads" ALTER COLUMN "created_at" DROP DEFAULT;
--> statement-breakpoint
ALTER TABLE "tree_heads" ALTER COLUMN "created_at" DROP NOT NULL;
