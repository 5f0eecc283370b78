-- paylog: the probe limit's row down to two fixed-width columns (issue 20, storage). Hand-written.
-- Migration 0014's row was (grp bigint, hour integer, tx bytea(16)): 8 + 4 + 17 data bytes, a
-- 56-byte tuple after alignment. Now it is (grp bigint, tx uuid): 8 + 16, a 48-byte tuple.
--   grp = (hour mod 256) << 56 | the low 56 bits of paylog_probe_group (= SHA-256(principal ‖ 0x00
--         ‖ served MAC) bytes 1..7), computed by paylog_probe_key(principal, served, window);
--   tx  = SHA-256(transactionId)[:16] as a uuid (16 bytes, no length header; as before).
-- A group of one hour is still one `grp` value, so the function's statements are unchanged in
-- shape: the count and the retry check are lookups of `grp = k` on the same index (its
-- generic plans, migration 0017, and any other setting on the function are carried over).
--
-- Why this is as strict as before:
-- - The hour: a group's rows of this hour carry this hour's tag; rows of the previous 128 hours
--   carry other tags, are never counted, and are deleted by paylog_probe_purge (run once per
--   hour per process, as the old `hour < now` DELETE was). A row 256 hours old that no purge
--   removed (the service idle for 128+ hours) would count in the hour sharing its tag: it can
--   only tighten that one group's limit for that hour, and that hour's first purge removes it.
--   Rows of later hours (a peer whose clock is ahead) are kept by a purge, as before.
-- - The digest: 56 bits instead of 64. Two groups sharing it in one hour are counted TOGETHER,
--   which only tightens both (a refusal can come earlier, never later); a checkout cannot aim
--   for it (the served MAC is keyed), and with N groups in one hour it happens with probability
--   about N²/2^57 (1e-4 per hour at a million groups per hour).
-- - tx keeps its 16 bytes: two ids of one group sharing a row (which would admit the second
--   uncounted) still need a 2^64 collision search. Uniqueness is the group lock's, as in 0014.
-- Rows of the current hour are carried over, so the limit stays exact across the migration.
CREATE OR REPLACE FUNCTION paylog_probe_key(p_principal text, p_served bytea, p_window timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT AS $$
  SELECT ((floor(extract(epoch FROM p_window) / 3600)::bigint & 255) << 56) | (paylog_probe_group(p_principal, p_served) & 72057594037927935)
$$;
--> statement-breakpoint
CREATE TABLE IF NOT EXISTS "submission_probe_slots_v3" (
	"grp" bigint NOT NULL,
	"tx" uuid NOT NULL
);
--> statement-breakpoint
INSERT INTO submission_probe_slots_v3 (grp, tx)
  SELECT DISTINCT ((hour::bigint & 255) << 56) | (grp & 72057594037927935), encode(tx, 'hex')::uuid FROM submission_probe_slots;
--> statement-breakpoint
DROP TABLE IF EXISTS "submission_probe_slots";
--> statement-breakpoint
ALTER TABLE "submission_probe_slots_v3" RENAME TO "submission_probe_slots";
--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "submission_probe_slots_grp_idx" ON "submission_probe_slots" USING btree ("grp");
--> statement-breakpoint
-- Rows of the 128 hours before p_window's (by tag); rows of its hour and later ones are kept.
CREATE OR REPLACE FUNCTION paylog_probe_purge(p_window timestamptz) RETURNS void
LANGUAGE sql VOLATILE AS $$
  DELETE FROM submission_probe_slots
   WHERE (((grp >> 56) - (floor(extract(epoch FROM p_window) / 3600)::bigint & 255)) & 255) >= 128
$$;
--> statement-breakpoint
-- Same contract as migrations 0008/0013/0014 (one statement per submission, the group's advisory
-- lock, replays and retries admitted without counting); only the row changed. Replaced from a
-- DO block so that the settings other migrations put on the function (0017's plan_cache_mode,
-- any later one) are put back on the new body.
DO $migration$
DECLARE
  cfg text[];
  s text;
BEGIN
  SELECT proconfig INTO cfg FROM pg_proc WHERE oid = 'paylog_probe_admit(text, bytea, text, timestamptz, integer)'::regprocedure;
  EXECUTE $fn$
CREATE OR REPLACE FUNCTION paylog_probe_admit(p_principal text, p_served bytea, p_transaction_id text, p_window timestamptz, p_limit integer)
RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  n integer;
  k bigint := paylog_probe_key(p_principal, p_served, p_window);
  t uuid;
BEGIN
  IF EXISTS (SELECT 1 FROM transactions WHERE transaction_id = p_transaction_id) THEN
    RETURN true;
  END IF;
  PERFORM pg_advisory_xact_lock(hashtextextended('paylog/probe/' || p_principal || '/' || encode(p_served, 'hex') || '/' || extract(epoch FROM p_window)::bigint::text, 0));
  t := encode(substring(sha256(convert_to(p_transaction_id, 'UTF8')) FROM 1 FOR 16), 'hex')::uuid;
  IF EXISTS (SELECT 1 FROM submission_probe_slots WHERE grp = k AND tx = t) THEN
    RETURN true;
  END IF;
  SELECT count(*) INTO n FROM (SELECT 1 FROM submission_probe_slots WHERE grp = k LIMIT p_limit) AS x;
  IF n >= p_limit THEN
    RETURN false;
  END IF;
  INSERT INTO submission_probe_slots (grp, tx) VALUES (k, t);
  RETURN true;
END
$$
$fn$;
  FOREACH s IN ARRAY coalesce(cfg, '{}'::text[]) LOOP
    EXECUTE format('ALTER FUNCTION paylog_probe_admit(text, bytea, text, timestamptz, integer) SET %I = %L', split_part(s, '=', 1), substring(s FROM position('=' IN s) + 1));
  END LOOP;
END
$migration$;
--> statement-breakpoint
-- Runtime role: records and expires slots (no UPDATE: a row is never changed).
REVOKE ALL ON submission_probe_slots FROM PUBLIC;
--> statement-breakpoint
GRANT SELECT, INSERT, DELETE ON submission_probe_slots TO paylog_app;
--> statement-breakpoint
GRANT SELECT ON submission_probe_slots TO paylog_auditor;
