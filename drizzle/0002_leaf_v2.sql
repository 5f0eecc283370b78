DROP INDEX "log_entries_transaction_id_idx";--> statement-breakpoint
DROP INDEX "transactions_processor_idx";--> statement-breakpoint
ALTER TABLE "access_entries" ALTER COLUMN "principal_role" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "access_entries" ALTER COLUMN "principal_name" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "access_entries" ALTER COLUMN "certificate_fingerprint" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "access_entries" ALTER COLUMN "action" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "access_entries" ALTER COLUMN "outcome" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "access_entries" ALTER COLUMN "source_address" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "log_entries" ALTER COLUMN "entry_type" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "transactions" ALTER COLUMN "processor" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "transactions" ALTER COLUMN "payment_method_type" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "transactions" ALTER COLUMN "masked" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "transactions" ALTER COLUMN "fingerprint" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "transactions" ALTER COLUMN "amount_value" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "transactions" ALTER COLUMN "currency" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "transactions" ALTER COLUMN "envelope_version" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "transactions" ALTER COLUMN "iv" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "transactions" ALTER COLUMN "ciphertext" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "transactions" ALTER COLUMN "tag" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "transactions" ALTER COLUMN "key_commitment" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "tree_heads" ADD COLUMN "mac" "bytea";--> statement-breakpoint
-- Hand-written (leaf format v2, issue 8). Tree heads written before the `mac` column existed
-- are trusted only up to the largest size present now; the mark lives in a table the runtime
-- role can read but not write, so forged unMAC'd rows above it are never chosen.
CREATE TABLE IF NOT EXISTS "paylog_marks" (
	"name" text PRIMARY KEY NOT NULL,
	"value" bigint NOT NULL
);
--> statement-breakpoint
INSERT INTO paylog_marks (name, value)
SELECT 'legacy_tree_head_max', coalesce(max(size), 0) FROM tree_heads
ON CONFLICT (name) DO NOTHING;
--> statement-breakpoint
REVOKE ALL ON paylog_marks FROM PUBLIC;
--> statement-breakpoint
GRANT SELECT ON paylog_marks TO paylog_app, paylog_auditor;
