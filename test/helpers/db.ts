/** Direct database access for tests (as the owner/superuser behind the service's back). */
import pg from 'pg';
import { epochIdSql, wrappedKeySql } from '../../src/services/transaction-queries.js';

/** Runs `fn` with a fresh client on `url`, closing it afterwards. */
export async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** One query on `url`; returns its rows. */
export async function query<T = any>(url: string, text: string, params: unknown[] = []): Promise<T[]> {
  return await withClient(url, async (c) => (await c.query(text, params)).rows as T[]);
}

/**
 * `data_keys` as the service reads it: each row's WHOLE wrapped key (a window row's enc ‖ the
 * row's bytes, migration 0018) and its epoch (a window row's is its window's, migration 0023), for tests that open or compare wrapped keys. Use as a table:
 * `FROM ${DATA_KEYS_WHOLE} d`.
 */
export const DATA_KEYS_WHOLE = `(SELECT d.log_index, d.window_id, ${wrappedKeySql('d', 'w')} AS wrapped_key, ${epochIdSql('d', 'w')} AS epoch_id, d.kms_key_id, d.shredded_at
  FROM data_keys d LEFT JOIN key_wrap_windows w ON w.id = d.window_id)`;

/** How long {@link backendsGone} waits (a loaded machine can take seconds to end a backend). */
const BACKENDS_GONE_TIMEOUT_MS = 60_000;

/**
 * Resolves once no client backend other than the one asking is connected to `url`'s database
 * (bounded; throws past the bound). A pool's `end()` resolves before its backends have exited,
 * and a backend writes its pending cumulative statistics (pg_stat_* counters) as it exits, before
 * it leaves pg_stat_activity: after this, every counter of the closed connections is visible.
 */
export async function backendsGone(url: string): Promise<void> {
  const deadline = Date.now() + BACKENDS_GONE_TIMEOUT_MS;
  for (;;) {
    const { n } = (
      await query<{ n: number }>(
        url,
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
      )
    )[0]!;
    if (n === 0) return;
    if (Date.now() > deadline) throw new Error(`${n} client backend(s) still connected after ${BACKENDS_GONE_TIMEOUT_MS} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
