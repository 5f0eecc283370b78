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
 * indexes, so they run in a transaction with:
 * - `plan_cache_mode = force_generic_plan`: one plan per named statement and connection, kept;
 * - `enable_seqscan = off`: that plan is made with index paths wherever one exists, whatever the
 *   table sizes when it was made (an empty new database, a table after its purge) — a plan that
 *   must scan a table still can (the setting only prices sequential scans out), so a query with
 *   no usable index keeps working, as slowly as before.
 *
 * Contract:
 * - KEEP_INDEX_PLANS is transaction-local (`SET LOCAL`): it MUST be sent inside the transaction
 *   whose statements it is for, BEFORE them (a named statement is planned when it first runs).
 * - A statement run this way MUST be run this way every time on the pool (its kept plan is the
 *   connection's, per statement name), and MUST be a lookup by indexed keys.
 */
import type pg from 'pg';

/** Kept (generic) plans for the rest of the transaction. */
export const KEPT_PLAN_MODE = 'SET LOCAL plan_cache_mode = force_generic_plan';
/** Plans made afresh for the rest of the transaction (the pool's own setting, src/db/connection.ts). */
export const FRESH_PLAN_MODE = 'SET LOCAL plan_cache_mode = force_custom_plan';
/** The settings, as statements for a simple-protocol string (`BEGIN; …; …`). */
export const KEEP_INDEX_PLANS = `${KEPT_PLAN_MODE}; SET LOCAL enable_seqscan = off`;

/**
 * Runs one statement in its own transaction under KEEP_INDEX_PLANS: `BEGIN` + settings, the
 * statement, `COMMIT`, written at once on one connection (the pool pipelines them: one round
 * trip). Resolves its result after COMMIT; rejects with the statement's error (its transaction
 * then ends as a rollback). A connection whose COMMIT failed is discarded.
 */
export async function queryKeepingIndexPlans(pool: pg.Pool, q: pg.QueryConfig): Promise<pg.QueryResult> {
  const client = await pool.connect();
  let broken = false;
  try {
    const begin = client.query(`BEGIN; ${KEEP_INDEX_PLANS}`);
    const run = client.query(q);
    const commit = client.query('COMMIT');
    const [b, r, c] = await Promise.allSettled([begin, run, commit]);
    if (c.status === 'rejected') broken = true;
    if (b.status === 'rejected') throw b.reason;
    if (r.status === 'rejected') throw r.reason;
    if (c.status === 'rejected') throw c.reason;
    return r.value;
  } finally {
    client.release(broken);
  }
}
