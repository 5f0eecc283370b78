CREATE TABLE "witness_cosignatures" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "witness_cosignatures_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"checkpoint_size" bigint NOT NULL,
	"root_hash" "bytea" NOT NULL,
	"witness_key" text NOT NULL,
	"cosigned_at" bigint NOT NULL,
	"signature_line" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE INDEX "witness_cosignatures_size_idx" ON "witness_cosignatures" USING btree ("checkpoint_size");