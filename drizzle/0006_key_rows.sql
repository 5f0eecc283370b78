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
