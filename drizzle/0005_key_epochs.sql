-- (Written by hand; drizzle/meta/0005_snapshot.json records the same tables for drizzle-kit.)
-- paylog: key epochs (envelope v2), per-period KMS keys, and the paylog_keys role that alone
-- may destroy or replace key material (issue 9). Hand-written.

CREATE TABLE "key_periods" (
	"granularity" text NOT NULL,
	"period_start" timestamp with time zone NOT NULL,
	"period_end" timestamp with time zone NOT NULL,
	"kms_key_id" text NOT NULL,
	"state" text DEFAULT 'active' NOT NULL,
	"deletion_date" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	PRIMARY KEY ("granularity", "period_start"),
	CHECK ("state" IN ('active', 'pending_deletion'))
);
--> statement-breakpoint
CREATE TABLE "key_epochs" (
	"epoch_id" text PRIMARY KEY NOT NULL,
	"processor" text NOT NULL,
	"granularity" text NOT NULL,
	"period_start" timestamp with time zone NOT NULL,
	"period_end" timestamp with time zone NOT NULL,
	"generation" integer NOT NULL,
	"public_key" bytea NOT NULL,
	"kms_key_id" text,
	"wrapped_private_key" bytea,
	"wrapped_key_sha256" bytea,
	"retired_at" timestamp with time zone,
	"shredded_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	UNIQUE ("processor", "granularity", "period_start", "generation"),
	CHECK (("wrapped_private_key" IS NULL) = ("shredded_at" IS NOT NULL))
);
--> statement-breakpoint
CREATE INDEX "key_epochs_current_idx" ON "key_epochs" ("processor", "period_start") WHERE "retired_at" IS NULL;
--> statement-breakpoint
ALTER TABLE "data_keys" ADD COLUMN "epoch_id" text REFERENCES "key_epochs"("epoch_id");
--> statement-breakpoint
ALTER TABLE "data_keys" ADD COLUMN "shredded_at" timestamp with time zone;
--> statement-breakpoint
ALTER TABLE "data_keys" ALTER COLUMN "kms_key_id" DROP NOT NULL;
--> statement-breakpoint
ALTER TABLE "data_keys" ALTER COLUMN "wrapped_key" DROP NOT NULL;
--> statement-breakpoint
ALTER TABLE "data_keys" ADD CONSTRAINT "data_keys_key_ref" CHECK (("kms_key_id" IS NULL) <> ("epoch_id" IS NULL));
--> statement-breakpoint
CREATE INDEX "data_keys_epoch_id_idx" ON "data_keys" ("epoch_id");
--> statement-breakpoint
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'paylog_keys') THEN
    BEGIN
      CREATE ROLE paylog_keys NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
  END IF;
  IF NOT pg_has_role(current_user, 'paylog_keys', 'MEMBER') THEN
    EXECUTE format('GRANT paylog_keys TO %I', current_user);
  END IF;
END
$$;
--> statement-breakpoint
GRANT USAGE ON SCHEMA public TO paylog_keys;
--> statement-breakpoint
-- Runtime role: creates epochs and period keys, marks epochs retired; never changes or removes
-- key material (no UPDATE of wrapped keys, no DELETE anywhere).
GRANT SELECT, INSERT ON key_epochs, key_periods TO paylog_app;
--> statement-breakpoint
GRANT UPDATE ("retired_at") ON key_epochs TO paylog_app;
--> statement-breakpoint
-- Key role (rewrap, shred, retention only): replaces or destroys wrapped keys; no DELETE, no log tables.
-- SELECT on transactions/log_entries: the processor of a record is in its leaf (KMS context of a rewrap).
GRANT SELECT ON key_epochs, key_periods, data_keys, transactions, log_entries TO paylog_keys;
--> statement-breakpoint
GRANT UPDATE ("kms_key_id", "wrapped_private_key", "wrapped_key_sha256", "retired_at", "shredded_at") ON key_epochs TO paylog_keys;
--> statement-breakpoint
GRANT UPDATE ("kms_key_id", "wrapped_key", "shredded_at") ON data_keys TO paylog_keys;
--> statement-breakpoint
GRANT UPDATE ("state", "deletion_date") ON key_periods TO paylog_keys;
--> statement-breakpoint
GRANT SELECT ON key_epochs, key_periods TO paylog_auditor;
