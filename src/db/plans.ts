/**
 * Kept index plans: how the service's hot key-lookup statements avoid planning on every run
 * without ever keeping a sequential scan (issue 20).
 *
 * The pool's connections plan every statement afresh (`plan_cache_mode = force_custom_plan`,
 * src/db/connection.ts), because a generic plan made while a table was tiny is a sequential
 * scan that stays in use as the table grows. For a few statements run on every submission or
 * forward, that planning is most of their cost (measured with pg_stat_statements: the
 * batch-state read planned in ~0.5 ms per batch against ~0.3 ms of execution; a forward's
 * first reads in 0.6 ms against 0.15 ms). Those statements are lookups by keys that have
 * indexes, so they run with:
 * - `plan_cache_mode = force_generic_plan`: one plan per named statement and connection, kept;
 * - `enable_seqscan = off`: that plan is made with index paths wherever one exists, whatever the
 *   table sizes when it was made (an empty new database, a table after its purge) — a plan that
 *   must scan a table still can (the setting only prices sequential scans out), so a query with
 *   no usable index keeps working, as slowly as before.
 * Alone, such a statement runs on connections whose SESSION has these settings (the AppDatabase's
 * `keptPlans` pool, src/db/connection.ts; KEPT_PLAN_SESSION): one statement in its own implicit
 * transaction, nothing around it (a forward's first reads were BEGIN + two SET LOCAL, the
 * statement and COMMIT: five statements, measured with pg_stat_statements). Inside a transaction
 * of the main pool (the append batch's state read), the same settings are SET LOCAL
 * (KEEP_INDEX_PLANS).
 *
 * Contract:
 * - KEEP_INDEX_PLANS is transaction-local (`SET LOCAL`): it MUST be sent inside the transaction
 *   whose statements it is for, BEFORE them (a named statement is planned when it first runs).
 * - A statement run this way MUST be run this way every time on its pool (its kept plan is the
 *   connection's, per statement name), and MUST be a lookup by indexed keys; the `keptPlans`
 *   pool runs nothing else.
 */
import type pg from 'pg';

/** Kept (generic) plans for the rest of the transaction. */
export const KEPT_PLAN_MODE = 'SET LOCAL plan_cache_mode = force_generic_plan';
/** Plans made afresh for the rest of the transaction (the pool's own setting, src/db/connection.ts). */
export const FRESH_PLAN_MODE = 'SET LOCAL plan_cache_mode = force_custom_plan';
/** The settings, as statements for a simple-protocol string (`BEGIN; …; …`). */
export const KEEP_INDEX_PLANS = `${KEPT_PLAN_MODE}; SET LOCAL enable_seqscan = off`;
/** The settings as start-up options of a session (the `keptPlans` pool's connections). */
export const KEPT_PLAN_SESSION = '-c plan_cache_mode=force_generic_plan -c enable_seqscan=off';

/**
 * Runs one named indexed lookup (or a write made of such lookups) with kept index plans: alone,
 * in its own implicit transaction, on the `keptPlans` pool. Resolves its result once committed;
 * rejects with the statement's error.
 */
export async function queryKeepingIndexPlans(database: { readonly keptPlans: pg.Pool }, q: pg.QueryConfig): Promise<pg.QueryResult> {
  return await database.keptPlans.query(q);
}
