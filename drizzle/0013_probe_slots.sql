-- paylog: the probe limit's rows made compact (issue 20, storage). Hand-written.
-- One row per new transaction per hour as before, but as (hour, slot) with slot = the first 16
-- bytes of SHA-256(principal ‖ 0x00 ‖ served MAC) ‖ the first 16 bytes of SHA-256(transactionId):
-- a group's rows are one contiguous range of the primary key (counted there), and the key no
-- longer repeats the principal, the 32-byte MAC, the id and two timestamps (about 275 → 110
-- bytes per submission). Truncation is safe: the served MAC is keyed (unpredictable to a
-- checkout), and two ids of one group sharing a slot need a 2^64 collision search. Rows of the
-- current hour are carried over, so the limit stays exact across the migration.
CREATE TABLE IF NOT EXISTS "submission_probe_slots" (
	"hour" integer NOT NULL,
	"slot" bytea NOT NULL,
	PRIMARY KEY ("hour", "slot")
);
--> statement-breakpoint
CREATE OR REPLACE FUNCTION paylog_probe_group(p_principal text, p_served bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog AS $$
  SELECT substring(sha256(convert_to(p_principal, 'UTF8') || '\x00'::bytea || p_served) FROM 1 FOR 16)
$$;
--> statement-breakpoint
INSERT INTO submission_probe_slots (hour, slot)
  SELECT floor(extract(epoch FROM window_start) / 3600)::integer,
         paylog_probe_group(principal, served_mac) || substring(sha256(convert_to(transaction_id, 'UTF8')) FROM 1 FOR 16)
    FROM submission_probes
  ON CONFLICT DO NOTHING;
--> statement-breakpoint
DROP TABLE IF EXISTS "submission_probes";
--> statement-breakpoint
-- Same contract as migration 0008's version (one statement per submission, the group's advisory
-- lock, replays and retries admitted without counting); only the rows changed.
CREATE OR REPLACE FUNCTION paylog_probe_admit(p_principal text, p_served bytea, p_transaction_id text, p_window timestamptz, p_limit integer)
RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  n integer;
  g bytea := paylog_probe_group(p_principal, p_served);
  h integer := floor(extract(epoch FROM p_window) / 3600)::integer;
  s bytea;
BEGIN
  IF EXISTS (SELECT 1 FROM transactions WHERE transaction_id = p_transaction_id) THEN
    RETURN true;
  END IF;
  PERFORM pg_advisory_xact_lock(hashtextextended('paylog/probe/' || p_principal || '/' || encode(p_served, 'hex') || '/' || extract(epoch FROM p_window)::bigint::text, 0));
  s := g || substring(sha256(convert_to(p_transaction_id, 'UTF8')) FROM 1 FOR 16);
  IF EXISTS (SELECT 1 FROM submission_probe_slots WHERE hour = h AND slot = s) THEN
    RETURN true;
  END IF;
  SELECT count(*) INTO n FROM (
    SELECT 1 FROM submission_probe_slots
     WHERE hour = h AND slot >= g || '\x00000000000000000000000000000000'::bytea AND slot <= g || '\xffffffffffffffffffffffffffffffff'::bytea
     LIMIT p_limit) AS x;
  IF n >= p_limit THEN
    RETURN false;
  END IF;
  INSERT INTO submission_probe_slots (hour, slot) VALUES (h, s) ON CONFLICT DO NOTHING;
  RETURN true;
END
$$;
--> statement-breakpoint
-- Runtime role: records and expires slots (no UPDATE: a row is never changed).
GRANT SELECT, INSERT, DELETE ON submission_probe_slots TO paylog_app;
--> statement-breakpoint
GRANT SELECT ON submission_probe_slots TO paylog_auditor;
