-- paylog: data_keys without created_at (issue 20, storage). Hand-written.
-- A data_keys row is written with its transactions row, in the same statement and with the same
-- created_at, and nothing reads the copy (retention and every report use transactions.created_at).
-- Dropping it saves 8 bytes and the alignment padding before it on every new row (existing rows
-- keep their bytes until rewritten; PostgreSQL only marks the column dropped).
ALTER TABLE "data_keys" DROP COLUMN IF EXISTS "created_at";
