-- paylog: the card security code, held only until authorization (issue 18 item 4;
-- src/cvc/). Hand-written. None of these is a log table and none holds anything a database
-- copy can open: a CVC is stored only HPKE-sealed to the in-memory X25519 keys of the running
-- paylog processes (`cvc_holder_keys` publishes their PUBLIC halves; the private halves never
-- leave process memory). SECURITY.md "The card security code".
CREATE TABLE IF NOT EXISTS "card_security_codes" (
	"transaction_id" text PRIMARY KEY NOT NULL,
	-- {"<holder key id>": "<base64 of enc || ciphertext>"}: one HPKE seal per live holder key.
	"sealed" jsonb NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "card_security_codes_expiry_idx" ON "card_security_codes" ("expires_at");
--> statement-breakpoint
CREATE TABLE IF NOT EXISTS "cvc_holder_keys" (
	"key_id" text PRIMARY KEY NOT NULL,
	"public_key" bytea NOT NULL,
	-- No CVC is sealed to the key after this; its private half is zeroed CVC_TTL later.
	"not_after" timestamp with time zone NOT NULL,
	-- HMAC under a key derived from the service MAC key: a row planted by the runtime role is ignored.
	"mac" bytea NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
-- Destructions per clock hour and cause, logged as ONE key_event `cvc_destroyed` leaf per
-- period once the period is over (`logged_at` set after the leaf committed).
CREATE TABLE IF NOT EXISTS "cvc_destructions" (
	"period_start" timestamp with time zone NOT NULL,
	"cause" text NOT NULL CHECK ("cause" IN ('used', 'expired')),
	"count" bigint NOT NULL CHECK ("count" >= 0),
	"logged_at" timestamp with time zone,
	PRIMARY KEY ("period_start", "cause")
);
--> statement-breakpoint
-- Runtime role: stores, consumes (DELETE … RETURNING) and expires sealed codes (never UPDATE);
-- publishes and expires its holder keys; counts destructions and marks a period logged.
GRANT SELECT, INSERT, DELETE ON card_security_codes TO paylog_app;
--> statement-breakpoint
GRANT SELECT, INSERT, DELETE ON cvc_holder_keys TO paylog_app;
--> statement-breakpoint
GRANT SELECT, INSERT, UPDATE ON cvc_destructions TO paylog_app;
