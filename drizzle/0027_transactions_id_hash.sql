-- paylog: transactions keyed by log index; transaction_id unique through a hash index (issue 20,
-- storage). Hand-written.
-- The primary key was the client-chosen transaction_id (text, ≤ 64 characters): a random-order
-- btree holding every id in full, about 70 bytes per transaction measured, beside the btree
-- `transactions_log_index_unique` (bigint, appended in order: ~22 bytes). The log index
-- identifies a row as well, so it becomes the primary key (the same btree, rebuilt under the
-- name `transactions_pkey`), and the uniqueness of transaction_id is enforced by an exclusion
-- constraint over a hash index, which stores a 4-byte hash of the id per row, not the id. The
-- constraint is exact: a row whose id hashes alike is compared by value (the heap's), so two
-- rows with one transaction_id are refused as before — by a committed row, and by a concurrent
-- insert (the second waits for the first, then fails) — with SQLSTATE 23P01
-- (exclusion_violation) where the primary key raised 23505. Nothing inserts into transactions
-- with ON CONFLICT (the append decides duplicates from the batch state it reads under the append
-- lock, src/log/append/pg-driver.ts) and no code reads the error code.
--
-- fillfactor = 100: the table is append-only and the hashes are uniform, so buckets are split
-- only when full on average (the default, 75, splits a quarter earlier). A hash index grows by
-- doubling its buckets (in quarter steps past 1,024 buckets), so its bytes per row saw-tooth with
-- the row count: measured 30–51 bytes per row from 15,000 to 450,000 rows (about 30–40 past
-- 150,000), against a steady 72 for the btree it replaces; 30 at the 100,000 of the storage bench
-- (984 bytes per card transaction all-in there, from 1,026).
--
-- Every lookup by transaction_id (`= $1`: release, forward, reads, the probe function; the
-- append's batch-state read `= ANY($1::text[])`, a bitmap scan of the hash index) still has an
-- index. Only paging in transaction_id order (the envelope-v1 rewrap pass) no longer walks one:
-- it sorts the v1 keys it selects, which it already had to filter from all data_keys rows.
--
-- data_keys' foreign key (log_index → transactions.log_index) depended on the unique index the
-- primary key replaces: it is dropped and made again, the same constraint under the same name,
-- now on the primary key. Grants and the append-only triggers are the table's and do not change.
-- A service from before this migration still inserts and reads its rows (same columns).
ALTER TABLE "data_keys" DROP CONSTRAINT "data_keys_log_index_transactions_log_index_fk";
--> statement-breakpoint
ALTER TABLE "transactions"
  DROP CONSTRAINT "transactions_pkey",
  DROP CONSTRAINT "transactions_log_index_unique",
  ADD CONSTRAINT "transactions_pkey" PRIMARY KEY ("log_index"),
  ADD CONSTRAINT "transactions_transaction_id_unique" EXCLUDE USING hash ("transaction_id" WITH =) WITH (fillfactor = 100);
--> statement-breakpoint
ALTER TABLE "data_keys" ADD CONSTRAINT "data_keys_log_index_transactions_log_index_fk" FOREIGN KEY ("log_index") REFERENCES "transactions"("log_index");
