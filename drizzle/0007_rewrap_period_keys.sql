-- paylog: every KMS key that has ever wrapped a key period's epoch private keys (issue 17,
-- "backups stay shredded after a rewrap"). Hand-written.
--
-- A period's original KMS key stays in key_periods.kms_key_id. This table adds the keys a
-- rewrap created for the period (role 'rewrap_target', round 1, 2, ...: alias
-- alias/paylog-epoch-<granularity>-<label>-r<round>), and keys KMS itself reported as the
-- source of a rewrapped epoch key that were not recorded yet (role 'rewrap_source': keys of an
-- earlier version's shared `rewrap --to` target). Retention schedules the deletion of EVERY
-- key of the period: the original and each row here.
--
-- Only paylog_keys (rewrap) and the owner may write it; the runtime role paylog_app reads it
-- (the newest target is the key new epochs of the period are wrapped under) and cannot add,
-- change or remove a row, so it can neither hide a key from retention nor name a key of its
-- choosing as a period's key.

CREATE TABLE IF NOT EXISTS "key_period_kms_keys" (
	"granularity" text NOT NULL,
	"period_start" timestamp with time zone NOT NULL,
	"kms_key_id" text NOT NULL,
	"role" text NOT NULL,
	"round" integer,
	"rewrap_run" text,
	"added_at" timestamp with time zone DEFAULT now() NOT NULL,
	PRIMARY KEY ("granularity", "period_start", "kms_key_id"),
	UNIQUE ("granularity", "period_start", "round"),
	CHECK ("role" IN ('rewrap_target', 'rewrap_source')),
	CHECK (("role" = 'rewrap_target') = ("round" IS NOT NULL AND "round" >= 1 AND "rewrap_run" IS NOT NULL))
);
--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "key_period_kms_keys_key_idx" ON "key_period_kms_keys" ("kms_key_id");
--> statement-breakpoint
GRANT SELECT ON key_period_kms_keys TO paylog_app;
--> statement-breakpoint
GRANT SELECT, INSERT ON key_period_kms_keys TO paylog_keys;
--> statement-breakpoint
GRANT SELECT ON key_period_kms_keys TO paylog_auditor;
