-- paylog: authenticated key rows (issue 17 item 3). Hand-written.
-- The runtime role may INSERT into key_epochs, so a row's presence proves nothing: rows the
-- service creates from now on carry `mac` = HMAC under a key derived from the KMS-wrapped
-- service key (src/kms/epoch-rows.ts), over the epoch's immutable identity. Rows that exist
-- now (no MAC) are trusted only if listed in paylog_legacy_key_epochs, which this migration
-- fills once and which the runtime role can read but not write; a forged legacy-looking row
-- inserted later is not in it.
ALTER TABLE "key_epochs" ADD COLUMN IF NOT EXISTS "mac" bytea;
--> statement-breakpoint
CREATE TABLE IF NOT EXISTS "paylog_legacy_key_epochs" (
	"epoch_id" text PRIMARY KEY NOT NULL,
	"public_key" bytea NOT NULL
);
--> statement-breakpoint
INSERT INTO paylog_legacy_key_epochs (epoch_id, public_key)
SELECT epoch_id, public_key FROM key_epochs WHERE mac IS NULL
ON CONFLICT (epoch_id) DO NOTHING;
--> statement-breakpoint
REVOKE ALL ON paylog_legacy_key_epochs FROM PUBLIC;
--> statement-breakpoint
GRANT SELECT ON paylog_legacy_key_epochs TO paylog_app, paylog_keys, paylog_auditor;
--> statement-breakpoint
-- Processor registrations and their status are an administrator's decision (an admin_event
-- entry in the log): the runtime role may read them but no longer INSERT or UPDATE them (it could
-- re-enable a processor an admin disabled, or register one). They are written on a connection of
-- their own, as a member of paylog_admin only (src/app.ts), like paylog_keys for key material.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'paylog_admin') THEN
    BEGIN
      CREATE ROLE paylog_admin NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
  END IF;
  IF NOT pg_has_role(current_user, 'paylog_admin', 'MEMBER') THEN
    EXECUTE format('GRANT paylog_admin TO %I', current_user);
  END IF;
END
$$;
--> statement-breakpoint
GRANT USAGE ON SCHEMA public TO paylog_admin;
--> statement-breakpoint
GRANT SELECT, INSERT, UPDATE ON processors TO paylog_admin;
--> statement-breakpoint
REVOKE INSERT, UPDATE ON processors FROM paylog_app;
--> statement-breakpoint
-- Row locks only: the append batch reads active processors FOR SHARE (a concurrent disable waits
-- for it), which PostgreSQL allows only with UPDATE on some column. created_at decides nothing.
GRANT UPDATE ("created_at") ON processors TO paylog_app;
