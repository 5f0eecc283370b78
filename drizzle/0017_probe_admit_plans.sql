-- paylog: the probe limit's function plans its statements once per connection (issue 20,
-- PostgreSQL CPU per submission). Hand-written.
-- The pool's connections run with plan_cache_mode = force_custom_plan (src/db/connection.ts: a
-- generic plan made while a log table was tiny would keep scanning it sequentially as it grows).
-- Inside paylog_probe_admit that setting re-planned every statement and expression of the
-- function on every call — one call per submission, about half of PostgreSQL's CPU per
-- submission. The function now runs with:
-- - plan_cache_mode = force_generic_plan: each statement is planned once per connection;
-- - enable_seqscan = off: that one plan can never be a sequential scan, whatever the size of the
--   tables when it was made (every statement of the function reads by an index: transactions by
--   its primary key, submission_probe_slots by its grp index), which is the danger the
--   connection-wide setting guards against.
-- Both settings hold only while the function runs (the caller's statement is planned as before).
-- Same function body, same decisions, same locks.
ALTER FUNCTION paylog_probe_admit(text, bytea, text, timestamptz, integer) SET plan_cache_mode = force_generic_plan;
--> statement-breakpoint
ALTER FUNCTION paylog_probe_admit(text, bytea, text, timestamptz, integer) SET enable_seqscan = off;
