-- paylog: the probe limit's rows made smaller still (issue 20, storage). Hand-written.
-- Migration 0013 stored (hour, slot) with slot = group[:16] ‖ SHA-256(transactionId)[:16] under
-- a btree primary key: about 70 bytes of heap and 74 of index per submission (a random-order
-- btree on 37-byte keys). Now a row is (grp, hour, tx) with
--   grp = SHA-256(principal ‖ 0x00 ‖ served MAC)[:8] as a bigint   (was [:16]; see below)
--   tx  = SHA-256(transactionId)[:16]                                (as before)
-- (columns in that order: no alignment padding, 56-byte tuples) and the only index is a btree on
-- grp alone (16-byte index tuples, where the primary key's were 48; a hash index measured worse).
-- A group's rows — the count — and a transaction's row — the retry check — are both found by
-- `grp = g` (then filtered on hour and tx).
--
-- Why this is as strict as before:
-- - Uniqueness of (hour, grp, tx) was the primary key's; it is now the advisory lock's:
--   paylog_probe_admit checks for the row and inserts it under the group's lock (as before), so
--   two admissions of one transaction never both insert. A row inserted any other way (only the
--   runtime role can) can only add to a count, i.e. tighten the limit — as before.
-- - A group digest of 8 bytes instead of 16: two groups sharing a digest are counted TOGETHER,
--   which only tightens both (the limit can refuse earlier, never later); a checkout cannot aim
--   for it (the served MAC is keyed), and a principal with k groups in one hour sees it with
--   probability about k²/2^65. What must not collide cheaply — two ids of one group sharing a
--   row, which would admit the second uncounted — keeps its 16 bytes (a 2^64 collision search).
-- Rows of the current hour are carried over, so the limit stays exact across the migration.
CREATE TABLE IF NOT EXISTS "submission_probe_slots_v2" (
	"grp" bigint NOT NULL,
	"hour" integer NOT NULL,
	"tx" bytea NOT NULL
);
--> statement-breakpoint
INSERT INTO submission_probe_slots_v2 (grp, hour, tx)
  SELECT DISTINCT ('x' || encode(substring(slot FROM 1 FOR 8), 'hex'))::bit(64)::bigint, hour, substring(slot FROM 17 FOR 16) FROM submission_probe_slots;
--> statement-breakpoint
DROP TABLE IF EXISTS "submission_probe_slots";
--> statement-breakpoint
ALTER TABLE "submission_probe_slots_v2" RENAME TO "submission_probe_slots";
--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "submission_probe_slots_grp_idx" ON "submission_probe_slots" USING btree ("grp");
--> statement-breakpoint
-- The group digest: SHA-256(principal ‖ 0x00 ‖ served MAC)[:8] as a bigint (0013 returned [:16] as bytea).
DROP FUNCTION IF EXISTS paylog_probe_group(text, bytea);
--> statement-breakpoint
CREATE FUNCTION paylog_probe_group(p_principal text, p_served bytea) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog AS $$
  SELECT ('x' || encode(substring(sha256(convert_to(p_principal, 'UTF8') || '\x00'::bytea || p_served) FROM 1 FOR 8), 'hex'))::bit(64)::bigint
$$;
--> statement-breakpoint
-- Same contract as migrations 0008/0013 (one statement per submission, the group's advisory
-- lock, replays and retries admitted without counting); only the rows changed.
CREATE OR REPLACE FUNCTION paylog_probe_admit(p_principal text, p_served bytea, p_transaction_id text, p_window timestamptz, p_limit integer)
RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  n integer;
  g bigint := paylog_probe_group(p_principal, p_served);
  h integer := floor(extract(epoch FROM p_window) / 3600)::integer;
  t bytea;
BEGIN
  IF EXISTS (SELECT 1 FROM transactions WHERE transaction_id = p_transaction_id) THEN
    RETURN true;
  END IF;
  PERFORM pg_advisory_xact_lock(hashtextextended('paylog/probe/' || p_principal || '/' || encode(p_served, 'hex') || '/' || extract(epoch FROM p_window)::bigint::text, 0));
  t := substring(sha256(convert_to(p_transaction_id, 'UTF8')) FROM 1 FOR 16);
  IF EXISTS (SELECT 1 FROM submission_probe_slots WHERE grp = g AND hour = h AND tx = t) THEN
    RETURN true;
  END IF;
  SELECT count(*) INTO n FROM (SELECT 1 FROM submission_probe_slots WHERE grp = g AND hour = h LIMIT p_limit) AS x;
  IF n >= p_limit THEN
    RETURN false;
  END IF;
  INSERT INTO submission_probe_slots (grp, hour, tx) VALUES (g, h, t);
  RETURN true;
END
$$;
--> statement-breakpoint
-- Runtime role: records and expires slots (no UPDATE: a row is never changed).
REVOKE ALL ON submission_probe_slots FROM PUBLIC;
--> statement-breakpoint
GRANT SELECT, INSERT, DELETE ON submission_probe_slots TO paylog_app;
--> statement-breakpoint
GRANT SELECT ON submission_probe_slots TO paylog_auditor;
