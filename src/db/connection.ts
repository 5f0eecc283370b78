/**
 * Database connections and migrations.
 *
 * - `applyMigrations(url)` runs the drizzle migrations in `drizzle/` as the connecting (owner)
 *   user, serialised across instances by an advisory lock.
 * - `openAppDatabase(url)` opens the pool the service runs on: every connection assumes the
 *   `paylog_app` role at start-up (`-c role=paylog_app`), so the service has INSERT/SELECT only
 *   on log tables even when the URL names an owner. Production may instead give a URL that logs
 *   in as a member of `paylog_app` directly (`PAYLOG_APP_DATABASE_URL`).
 */
import { join } from 'node:path';
import pg from 'pg';
import { drizzle, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import { migrate } from 'drizzle-orm/node-postgres/migrator';
import * as schema from './schema.js';
import { packageRoot } from '../package-root.js';
import { KEPT_PLAN_SESSION } from './plans.js';

/** `drizzle/` of the package root (the same from `src/` under tsx and from the build in `dist/`). */
export const MIGRATIONS_DIR = join(packageRoot(), 'drizzle');
export const APP_ROLE = 'paylog_app';
/** Advisory lock key that serialises migrations across service instances ("paylogmg"). */
const MIGRATION_LOCK_KEY = 0x7061796c6f676d67n;
const DEFAULT_POOL_SIZE = 10;
/** Connections of the kept-plan pool (per AppDatabase; each lookup on it is one short statement). */
const KEPT_PLAN_POOL_SIZE = 4;
/** The client abandons a query this long after the server's statement_timeout should have fired
 * (a server or network that stopped answering altogether). */
const CLIENT_QUERY_TIMEOUT_MARGIN_MS = 1_000;

/** Time budgets of the runtime pool (config.ts `TimeBudgets`, database part). */
export interface PoolTimeouts {
  connectTimeoutMs: number;
  statementTimeoutMs: number;
  lockTimeoutMs: number;
  idleInTransactionTimeoutMs: number;
}

export type Db = NodePgDatabase<typeof schema> & { $client: pg.Pool };

export interface AppDatabase {
  readonly db: Db;
  readonly pool: pg.Pool;
  /**
   * Connections whose session keeps index plans (src/db/plans.ts `queryKeepingIndexPlans`):
   * only for the named indexed lookups run through it, never for anything else.
   */
  readonly keptPlans: pg.Pool;
  close(): Promise<void>;
}

/** Applies pending migrations; resolves once the schema is current. Safe to run concurrently. */
export async function applyMigrations(ownerUrl: string): Promise<void> {
  const client = new pg.Client({ connectionString: ownerUrl });
  client.on('error', () => {}); // a lost server fails the query in flight; no unhandled 'error'
  await client.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY.toString()]);
    try {
      await migrate(drizzle(client), { migrationsFolder: MIGRATIONS_DIR });
    } catch (e) {
      // drizzle wraps the server's error (with the whole SQL text); report the server's words.
      const cause = (e as { cause?: { message?: string; code?: string } }).cause;
      const why = cause?.message ?? (e as Error).message;
      throw new Error(
        `database migration failed${cause?.code ? ` (SQLSTATE ${cause.code})` : ''}: ${why}. ` +
          'The DATABASE_URL user must own the schema and may create roles (CREATEROLE), or have paylog_app and paylog_auditor granted to it.',
        { cause: e },
      );
    }
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY.toString()]).catch(() => {});
    await client.end();
  }
}

/**
 * Opens the runtime pool; every connection runs as `role` (default `paylog_app`).
 *
 * Contract: the pool outlives its server. A connection that loses its server (restart, crash,
 * network) — idle or checked out — is reported through `onConnectionError` and discarded, never
 * an unhandled 'error' event; the next query opens a new connection. With `timeouts`, every
 * connection attempt, statement, lock wait (the append advisory lock included) and idle
 * transaction is bounded, and a query with no answer at all is abandoned by the client.
 */
export function openAppDatabase(
  url: string,
  opts: { role?: string | null; max?: number; timeouts?: PoolTimeouts; onConnectionError?: (e: Error) => void } = {},
): AppDatabase {
  const role = opts.role === undefined ? APP_ROLE : opts.role;
  const t = opts.timeouts;
  const onConnectionError = opts.onConnectionError ?? (() => {});
  const newPool = (max: number, planSettings: string) => {
    const pool = new pg.Pool({
      connectionString: url,
      max,
      keepAlive: true,
      // node-postgres pipeline mode: statements queued on one client are written at once, not one
      // per answer. The appender queues the statements of a batch that need no decision in Node
      // (src/log/appender.ts commitBatch); every other caller awaits each statement anyway.
      pipeline: true,
      ...(t
        ? {
            connectionTimeoutMillis: t.connectTimeoutMs,
            statement_timeout: t.statementTimeoutMs,
            lock_timeout: t.lockTimeoutMs,
            idle_in_transaction_session_timeout: t.idleInTransactionTimeoutMs,
            query_timeout: t.statementTimeoutMs + CLIENT_QUERY_TIMEOUT_MARGIN_MS,
          }
        : {}),
      options: `${planSettings}${role ? ` -c role=${role}` : ''}`,
    });
    // An idle client losing its server must not crash the process; the next query reports it.
    pool.on('error', (e) => onConnectionError(e));
    // Nor may a checked-out one (pg-pool listens only while a client is idle): the query in flight
    // fails, the client is no longer queryable and is discarded on release.
    pool.on('connect', (client) => client.on('error', (e) => onConnectionError(e)));
    return pool;
  };
  // Custom plans for every execution of a prepared statement: the log tables start empty and
  // grow fast, and a generic plan cached while they were tiny (a sequential scan) would stay
  // in use on every pooled connection as they grow (measured: 35M tuples read by seq scans of
  // merkle_nodes in 20 s of load). Planning these small statements costs microseconds.
  const pool = newPool(opts.max ?? DEFAULT_POOL_SIZE, '-c plan_cache_mode=force_custom_plan');
  // The few hot indexed lookups that keep their plans (src/db/plans.ts): connections opened only
  // when one runs.
  const keptPlans = newPool(KEPT_PLAN_POOL_SIZE, KEPT_PLAN_SESSION);
  const db = drizzle(pool, { schema });
  return { db, pool, keptPlans, close: async () => void (await Promise.all([pool.end(), keptPlans.end()])) };
}

/** Creates a database on the server at `adminUrl` and returns the URL pointing at it. */
export async function createDatabase(adminUrl: string, name: string): Promise<string> {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`invalid database name ${name}`);
  const client = new pg.Client({ connectionString: adminUrl });
  client.on('error', () => {}); // a lost server fails the query in flight; no unhandled 'error'
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  return u.toString();
}

/** Prefix of the per-database login role the service runs as (a member of paylog_app only). */
const SERVICE_LOGIN_PREFIX = 'paylog_svc_';

/**
 * Creates (or re-keys) the login role the service's pool uses: LOGIN, no superuser, no
 * CREATEROLE/CREATEDB, member of `paylog_app` only — so a runtime session cannot `SET ROLE`
 * back to the owner. The password is derived by the caller from a KMS-protected key, so every
 * instance computes the same one. Returns the connection URL for that role, or null when the
 * owner may not create roles (the caller then falls back to `-c role=paylog_app`).
 */
export async function ensureServiceLogin(ownerUrl: string, password: string): Promise<string | null> {
  return await ensureLoginRole(ownerUrl, password, { prefix: SERVICE_LOGIN_PREFIX, member: APP_ROLE });
}

/** Group role of the key-destruction connection (rewrap, shred, retention only; migration 0002). */
export const KEYS_ROLE = 'paylog_keys';
/** Prefix of the per-database login role of the key-destruction connection. */
const KEYS_LOGIN_PREFIX = 'paylog_keys_';

/** Like {@link ensureServiceLogin}, for the login role that is a member of `paylog_keys` only. */
export async function ensureKeysLogin(ownerUrl: string, password: string): Promise<string | null> {
  return await ensureLoginRole(ownerUrl, password, { prefix: KEYS_LOGIN_PREFIX, member: KEYS_ROLE });
}

/** Group role of the processor-registration connection (admin decisions only; migration 0009). */
export const ADMIN_ROLE = 'paylog_admin';
/** Prefix of the per-database login role of the processor-registration connection. */
const ADMIN_LOGIN_PREFIX = 'paylog_adm_';

/** Like {@link ensureServiceLogin}, for the login role that is a member of `paylog_admin` only. */
export async function ensureAdminLogin(ownerUrl: string, password: string): Promise<string | null> {
  return await ensureLoginRole(ownerUrl, password, { prefix: ADMIN_LOGIN_PREFIX, member: ADMIN_ROLE });
}

/** Creates (or re-keys) `<prefix><database>` LOGIN, member of `member` only; null without CREATEROLE. */
async function ensureLoginRole(ownerUrl: string, password: string, o: { prefix: string; member: string }): Promise<string | null> {
  const client = new pg.Client({ connectionString: ownerUrl });
  client.on('error', () => {}); // a lost server fails the query in flight; no unhandled 'error'
  await client.connect();
  try {
    const db = (await client.query('SELECT current_database() AS d')).rows[0].d as string;
    const role = (o.prefix + db.toLowerCase().replace(/[^a-z0-9_]/g, '_')).slice(0, 63);
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY.toString()]);
    try {
      const exists = (await client.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role])).rowCount! > 0;
      const verb = exists ? 'ALTER' : 'CREATE';
      const ddl = (
        await client.query(`SELECT format('${verb} ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD %L', $1::text, $2::text) AS q`, [
          role,
          password,
        ])
      ).rows[0].q as string;
      await client.query(ddl);
      await client.query(`SELECT format('GRANT %I TO %I', $1::text, $2::text) AS q`, [o.member, role]).then((r) => client.query(r.rows[0].q as string));
    } catch (e) {
      if ((e as { code?: string }).code === '42501') return null; // insufficient_privilege
      throw e;
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY.toString()]).catch(() => {});
    }
    const u = new URL(ownerUrl);
    u.username = role;
    u.password = password;
    return u.toString();
  } finally {
    await client.end();
  }
}

/** Drops a database created with `createDatabase` (forcing off its connections). */
export async function dropDatabase(adminUrl: string, name: string): Promise<void> {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`invalid database name ${name}`);
  const client = new pg.Client({ connectionString: adminUrl });
  client.on('error', () => {}); // a lost server fails the query in flight; no unhandled 'error'
  await client.connect();
  try {
    await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  } finally {
    await client.end();
  }
}
