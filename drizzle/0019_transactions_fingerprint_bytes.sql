-- paylog: the v2 fingerprint stored as its 16 bytes (issue 20, storage). Hand-written.
-- `transactions.fingerprint` held the served text `fp2_` + base64url(16 bytes): 27 bytes of
-- row. New rows store the 16 bytes in `fingerprint_v2` (17 bytes) and leave `fingerprint` NULL;
-- the service serves `fp2_` + base64url(fingerprint_v2), the same text as before
-- (src/crypto/fingerprint.ts `formatFingerprintV2`). Rows from before keep their text and are
-- served from it. A nullable column added at the end: no rewrite, and the table-level grants
-- (runtime role INSERT/SELECT, key role and auditor SELECT) cover it; the append-only triggers
-- are the table's.
ALTER TABLE "transactions" ADD COLUMN IF NOT EXISTS "fingerprint_v2" bytea;
