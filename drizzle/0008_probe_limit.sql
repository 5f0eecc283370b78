-- paylog: the probe limit (issue 17; src/services/probe-limit.ts). Hand-written. Not a log
-- table: one row per new transaction per principal × served payment fields (a keyed MAC,
-- src/crypto/fingerprint.ts `probeServedMac`) × hour, deleted once its hour has passed.
CREATE TABLE IF NOT EXISTS "submission_probes" (
	"principal" text NOT NULL,
	"served_mac" bytea NOT NULL,
	"transaction_id" text NOT NULL,
	"window_start" timestamp with time zone NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	PRIMARY KEY ("principal", "served_mac", "window_start", "transaction_id")
);
--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "submission_probes_window_idx" ON "submission_probes" ("window_start");
--> statement-breakpoint
-- One statement per submission, strict across sessions: the group's advisory lock (held to the
-- end of the caller's transaction, i.e. of this statement in autocommit) serialises the count
-- and the insert of one group; other groups never wait. VOLATILE, so every statement inside
-- reads a fresh snapshot taken after the lock (READ COMMITTED). A committed transactionId (a
-- replay) and one already counted this hour (a retry) are admitted without counting.
CREATE OR REPLACE FUNCTION paylog_probe_admit(p_principal text, p_served bytea, p_transaction_id text, p_window timestamptz, p_limit integer)
RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  n integer;
BEGIN
  IF EXISTS (SELECT 1 FROM transactions WHERE transaction_id = p_transaction_id) THEN
    RETURN true;
  END IF;
  PERFORM pg_advisory_xact_lock(hashtextextended('paylog/probe/' || p_principal || '/' || encode(p_served, 'hex') || '/' || extract(epoch FROM p_window)::bigint::text, 0));
  IF EXISTS (SELECT 1 FROM submission_probes WHERE principal = p_principal AND served_mac = p_served AND window_start = p_window AND transaction_id = p_transaction_id) THEN
    RETURN true;
  END IF;
  SELECT count(*) INTO n FROM (SELECT 1 FROM submission_probes WHERE principal = p_principal AND served_mac = p_served AND window_start = p_window LIMIT p_limit) AS g;
  IF n >= p_limit THEN
    RETURN false;
  END IF;
  INSERT INTO submission_probes (principal, served_mac, transaction_id, window_start) VALUES (p_principal, p_served, p_transaction_id, p_window) ON CONFLICT DO NOTHING;
  RETURN true;
END
$$;
--> statement-breakpoint
-- Runtime role: records and expires probe rows (no UPDATE: a row is never changed).
GRANT SELECT, INSERT, DELETE ON submission_probes TO paylog_app;
--> statement-breakpoint
GRANT EXECUTE ON FUNCTION paylog_probe_admit(text, bytea, text, timestamptz, integer) TO paylog_app;
