CREATE TABLE "access_entries" (
	"log_index" bigint PRIMARY KEY NOT NULL,
	"transaction_id" text NOT NULL,
	"principal_role" text NOT NULL,
	"principal_name" text NOT NULL,
	"certificate_fingerprint" text NOT NULL,
	"action" text NOT NULL,
	"purpose" text,
	"reference" text,
	"outcome" text NOT NULL,
	"source_address" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "checkpoints" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "checkpoints_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"size" bigint NOT NULL,
	"root_hash" "bytea" NOT NULL,
	"note" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "data_keys" (
	"transaction_id" text PRIMARY KEY NOT NULL,
	"kms_key_id" text NOT NULL,
	"wrapped_key" "bytea" NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "keyring" (
	"name" text PRIMARY KEY NOT NULL,
	"kms_key_id" text NOT NULL,
	"wrapped_key" "bytea" NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "log_entries" (
	"idx" bigint PRIMARY KEY NOT NULL,
	"entry_type" text NOT NULL,
	"transaction_id" text,
	"leaf" "bytea" NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "merkle_nodes" (
	"level" smallint NOT NULL,
	"idx" bigint NOT NULL,
	"hash" "bytea" NOT NULL,
	CONSTRAINT "merkle_nodes_level_idx_pk" PRIMARY KEY("level","idx")
);
--> statement-breakpoint
CREATE TABLE "processors" (
	"name" text PRIMARY KEY NOT NULL,
	"principal_uri" text NOT NULL,
	"status" text DEFAULT 'active' NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "revoked_certificates" (
	"fingerprint" text PRIMARY KEY NOT NULL,
	"serial" text,
	"reason" text,
	"revoked_by" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "transactions" (
	"transaction_id" text PRIMARY KEY NOT NULL,
	"log_index" bigint NOT NULL,
	"processor" text NOT NULL,
	"request_mac" "bytea" NOT NULL,
	"payment_method_type" text NOT NULL,
	"masked" jsonb NOT NULL,
	"fingerprint" text NOT NULL,
	"amount_value" bigint NOT NULL,
	"currency" text NOT NULL,
	"metadata" jsonb,
	"envelope_version" smallint NOT NULL,
	"iv" "bytea" NOT NULL,
	"ciphertext" "bytea" NOT NULL,
	"tag" "bytea" NOT NULL,
	"key_commitment" "bytea" NOT NULL,
	"salt" "bytea",
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "transactions_log_index_unique" UNIQUE("log_index")
);
--> statement-breakpoint
CREATE TABLE "tree_heads" (
	"size" bigint PRIMARY KEY NOT NULL,
	"root_hash" "bytea" NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "data_keys" ADD CONSTRAINT "data_keys_transaction_id_transactions_transaction_id_fk" FOREIGN KEY ("transaction_id") REFERENCES "public"."transactions"("transaction_id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "access_entries_transaction_id_idx" ON "access_entries" USING btree ("transaction_id");--> statement-breakpoint
CREATE INDEX "checkpoints_size_idx" ON "checkpoints" USING btree ("size");--> statement-breakpoint
CREATE INDEX "log_entries_transaction_id_idx" ON "log_entries" USING btree ("transaction_id");--> statement-breakpoint
CREATE INDEX "transactions_processor_idx" ON "transactions" USING btree ("processor");