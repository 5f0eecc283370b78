-- paylog: client-side encryption keys with their own per-period KMS keys, destroyed after their
-- period plus overlap (issue 17). Hand-written.
-- One row per CSE key id: its seed, wrapped under the KMS key of its own period
-- (alias/paylog-cse-<label>, encryption context naming the kid). Retention (paylog_keys)
-- destroys a key by setting wrapped_seed to NULL after its KMS key is scheduled for deletion.

CREATE TABLE IF NOT EXISTS "cse_keys" (
	"kid" text PRIMARY KEY NOT NULL,
	"period_start" timestamp with time zone NOT NULL,
	"period_end" timestamp with time zone NOT NULL,
	"kms_key_id" text NOT NULL,
	"wrapped_seed" bytea,
	"destroyed_at" timestamp with time zone,
	"deletion_date" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "cse_keys_destroyed" CHECK (("wrapped_seed" IS NULL) = ("destroyed_at" IS NOT NULL))
);
--> statement-breakpoint
-- Runtime role: creates keys (a planted row is refused at use: src/cse/keys.ts); never destroys.
GRANT SELECT, INSERT ON cse_keys TO paylog_app;
--> statement-breakpoint
-- Key role (retention only): destroys the wrapped seed; no DELETE.
GRANT SELECT ON cse_keys TO paylog_keys;
--> statement-breakpoint
GRANT UPDATE ("wrapped_seed", "destroyed_at", "deletion_date") ON cse_keys TO paylog_keys;
--> statement-breakpoint
GRANT SELECT ON cse_keys TO paylog_auditor;
