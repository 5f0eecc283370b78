-- paylog: forwards to processors (issue 18). Hand-written.
-- forward_destinations: an administrator's decision (each change an admin_event entry committed
-- first). Written only on the admin connection (paylog_admin), like processors; the runtime role
-- reads it, and uses a row only while its configuration hashes to what its admin_event entry
-- recorded (src/services/forward/destinations.ts).
CREATE TABLE IF NOT EXISTS "forward_destinations" (
	"processor" text NOT NULL,
	"name" text NOT NULL,
	"config" jsonb NOT NULL,
	"wrapped_client_key" bytea,
	"admin_log_index" bigint NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "forward_destinations_pkey" PRIMARY KEY ("processor", "name")
);
--> statement-breakpoint
REVOKE ALL ON forward_destinations FROM PUBLIC;
--> statement-breakpoint
GRANT SELECT ON forward_destinations TO paylog_app, paylog_auditor;
--> statement-breakpoint
GRANT SELECT, INSERT, UPDATE, DELETE ON forward_destinations TO paylog_admin;
--> statement-breakpoint
-- forward_requests: one row per (transaction, Idempotency-Key): the keyed MAC of the request,
-- where its entries are, and the MASKED answer a retry gets. Written by the runtime role before
-- the access entry (pending), after it (sent) and after the result entry (done); a pending row is
-- deleted only when its access entry could not be appended (nothing was sent).
CREATE TABLE IF NOT EXISTS "forward_requests" (
	"transaction_id" text NOT NULL,
	"idempotency_key" text NOT NULL,
	"request_mac" bytea NOT NULL,
	"state" text NOT NULL,
	"access_log_index" bigint,
	"result_log_index" bigint,
	"answer" jsonb,
	"started_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "forward_requests_pkey" PRIMARY KEY ("transaction_id", "idempotency_key"),
	CONSTRAINT "forward_requests_state_check" CHECK ("state" IN ('pending', 'sent', 'done'))
);
--> statement-breakpoint
REVOKE ALL ON forward_requests FROM PUBLIC;
--> statement-breakpoint
GRANT SELECT, INSERT, UPDATE, DELETE ON forward_requests TO paylog_app;
--> statement-breakpoint
GRANT SELECT ON forward_requests TO paylog_auditor;
