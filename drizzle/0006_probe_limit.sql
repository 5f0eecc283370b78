-- paylog: the probe limit (issue 17). Hand-written. Not a log table: rows are counters of
-- distinct payment methods per principal × served payment fields × hour, deleted once their
-- hour has passed. Holds only keyed MACs (src/crypto/fingerprint.ts `probeMacs`).
CREATE TABLE IF NOT EXISTS "submission_probes" (
	"principal" text NOT NULL,
	"served_mac" bytea NOT NULL,
	"identifier_mac" bytea NOT NULL,
	"window_start" timestamp with time zone NOT NULL,
	"slot" integer NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	PRIMARY KEY ("principal", "served_mac", "window_start", "identifier_mac"),
	UNIQUE ("principal", "served_mac", "window_start", "slot")
);
--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "submission_probes_window_idx" ON "submission_probes" ("window_start");
--> statement-breakpoint
-- Runtime role: records and expires probe rows (no UPDATE: a row is never changed).
GRANT SELECT, INSERT, DELETE ON submission_probes TO paylog_app;
