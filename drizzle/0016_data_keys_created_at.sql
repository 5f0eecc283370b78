-- paylog: data_keys.created_at no longer written (issue 20, storage). Hand-written.
-- A data_keys row is written with its transactions row, in the same statement and with the same
-- created_at, and nothing reads the copy (retention and every report use transactions.created_at).
-- New rows leave it NULL, which takes no byte (the row already has a null bitmap): 8 bytes and
-- the alignment padding before them saved per row. The column stays, nullable, so a service
-- rolled back to before this migration still inserts its rows.
ALTER TABLE "data_keys" ALTER COLUMN "created_at" DROP DEFAULT;
--> statement-breakpoint
ALTER TABLE "data_keys" ALTER COLUMN "created_at" DROP NOT NULL;
