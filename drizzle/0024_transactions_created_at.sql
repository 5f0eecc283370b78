-- paylog: transactions.created_at written only where it is read (issue 20, storage). Hand-written.
-- The column is read for two kinds of rows only: format v1 records (their served createdAt; rows
-- from before leaf format v2) and records whose data key a KMS key wraps (`data_keys.kms_key_id`,
-- the per-transaction key mode), which retention selects by it. Every other record's time is its
-- leaf's (`time`, src/services/transaction-record.ts), and the append no longer reads it back
-- (a replay is decided by the MAC alone). New rows of epoch-wrapped records leave it NULL: 8
-- bytes and the alignment padding before them (about 18 bytes of heap per transaction measured,
-- the row then fits one MAXALIGN step lower). The column stays, nullable, so a service rolled
-- back to before this migration still inserts its rows; no rewrite.
ALTER TABLE "transactions" ALTER COLUMN "created_at" DROP DEFAULT;
--> statement-breakpoint
ALTER TABLE "transactions" ALTER COLUMN "created_at" DROP NOT NULL;
