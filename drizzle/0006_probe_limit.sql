-- paylog: the probe limit (issue 17; src/services/probe-limit.ts). Hand-written. Not a log
-- table: one row per new transaction per principal × served payment fields (a keyed MAC,
-- src/crypto/fingerprint.ts `probeMacs`) × hour, deleted once its hour has passed.
CREATE TABLE IF NOT EXISTS "submission_probes" (
	"principal" text NOT NULL,
	"served_mac" bytea NOT NULL,
	"transaction_id" text NOT NULL,
	"window_start" timestamp with time zone NOT NULL,
	"slot" integer NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	PRIMARY KEY ("principal", "served_mac", "window_start", "transaction_id"),
	UNIQUE ("principal", "served_mac", "window_start", "slot")
);
--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "submission_probes_window_idx" ON "submission_probes" ("window_start");
--> statement-breakpoint
-- Runtime role: records and expires probe rows (no UPDATE: a row is never changed).
GRANT SELECT, INSERT, DELETE ON submission_probes TO paylog_app;
