/** Direct database access for tests (as the owner/superuser behind the service's back). */
import pg from 'pg';

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
