-- paylog: the probe limit's group key computed inside paylog_probe_admit (issue 20, CPU). Hand-written.
-- paylog_probe_admit computed its key as `k bigint := paylog_probe_key(...)`, a SQL function that
-- calls paylog_probe_group, a SQL function with `SET search_path = pg_catalog`. A function with a
-- SET clause is never inlined, and a non-inlined SQL function called from a PL/pgSQL expression
-- is parsed and planned again in every transaction (its plan lives in the expression state of
-- the transaction), with a search_path change around it. pg_stat_statements under load: 100 µs
-- of PostgreSQL time per submission for that one line, more than the rest of the function
-- (lock, lookups, count, insert) together.
--
-- The key is now the same expression written inline (functions schema-qualified, or in the
-- keyword forms EXTRACT and SUBSTRING, which always name pg_catalog's), so PL/pgSQL evaluates
-- it as a simple expression, planned once per session:
--   k = (hour mod 256) << 56 | low 56 bits of SHA-256(principal ‖ 0x00 ‖ served MAC)[:8]
-- — bit for bit paylog_probe_key (migration 0022), which stays for tests and tools
-- (test/probe-slots.test.ts compares the two). Nothing else in the function changes: the same
-- statements in the same order, the group lock, replays and retries admitted without counting.
-- As in 0022 the function is replaced from a DO block so that the settings other migrations put
-- on it (0017's plan_cache_mode, 0020's enable_seqscan) are put back on the new body.
DO $migration$
DECLARE
  cfg text[];
  s text;
BEGIN
  SELECT proconfig INTO cfg FROM pg_proc WHERE oid = 'paylog_probe_admit(text, bytea, text, timestamptz, integer)'::regprocedure;
  EXECUTE $fn$
CREATE OR REPLACE FUNCTION paylog_probe_admit(p_principal text, p_served bytea, p_transaction_id text, p_window timestamptz, p_limit integer)
RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  n integer;
  k bigint := ((pg_catalog.floor(extract(epoch FROM p_window) / 3600)::bigint & 255) << 56)
              | (('x' || pg_catalog.encode(substring(pg_catalog.sha256(pg_catalog.convert_to(p_principal, 'UTF8') || '\x00'::bytea || p_served) FROM 1 FOR 8), 'hex'))::bit(64)::bigint
                 & 72057594037927935);
  t uuid;
BEGIN
  IF EXISTS (SELECT 1 FROM transactions WHERE transaction_id = p_transaction_id) THEN
    RETURN true;
  END IF;
  PERFORM pg_advisory_xact_lock(hashtextextended('paylog/probe/' || p_principal || '/' || encode(p_served, 'hex') || '/' || extract(epoch FROM p_window)::bigint::text, 0));
  t := encode(substring(sha256(convert_to(p_transaction_id, 'UTF8')) FROM 1 FOR 16), 'hex')::uuid;
  IF EXISTS (SELECT 1 FROM submission_probe_slots WHERE grp = k AND tx = t) THEN
    RETURN true;
  END IF;
  SELECT count(*) INTO n FROM (SELECT 1 FROM submission_probe_slots WHERE grp = k LIMIT p_limit) AS x;
  IF n >= p_limit THEN
    RETURN false;
  END IF;
  INSERT INTO submission_probe_slots (grp, tx) VALUES (k, t);
  RETURN true;
END
$$
$fn$;
  FOREACH s IN ARRAY coalesce(cfg, '{}'::text[]) LOOP
    EXECUTE format('ALTER FUNCTION paylog_probe_admit(text, bytea, text, timestamptz, integer) SET %I = %L', split_part(s, '=', 1), substring(s FROM position('=' IN s) + 1));
  END LOOP;
END
$migration$;
