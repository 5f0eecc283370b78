/**
 * Start-up step "embedded database": where paylog's database lives (DATABASE_URL or embedded
 * PostgreSQL under dataDir/pg — its cluster elsewhere when running as root from a directory the
 * server's user cannot enter, said on start), migrated, with the bootstrap pool open.
 *
 * Contract: resolves only after migrations are applied. It MUST NOT create login roles (the
 * logins step does) and never reads a key.
 */
import { dirname, join } from 'node:path';
import pg from 'pg';
import type { Config } from '../config.js';
import { errorForLog, type Logger } from '../logging.js';
import { EMBEDDED_OS_USER, startEmbeddedPostgres, type EmbeddedServer } from '../db/embedded.js';
import { APP_ROLE, applyMigrations, openAppDatabase, type AppDatabase, type PoolTimeouts } from '../db/connection.js';
import type { Cleanups } from './cleanups.js';

export const EMBEDDED_DATABASE = 'paylog';

/** How every pool of the service is opened (time budgets, lost-connection report). */
interface PoolOptions {
  timeouts: PoolTimeouts;
  onConnectionError: (e: Error) => void;
}

/** Where a runtime pool connects, and as what (`role`: SET ROLE after connecting, or none). */
export interface RuntimeLogin {
  url: string;
  role: string | null;
}

/** The database as the later steps see it; `database` and `login` change once (logins step). */
export interface DatabaseStep {
  /** The owner's URL (migrations, role management; tests attack through it). */
  ownerUrl: string;
  poolOptions: PoolOptions;
  /** The runtime pool (cleanup closes whichever pool is current). */
  current: { database: AppDatabase; login: RuntimeLogin };
}

/** Creates the `paylog` database on an embedded server if missing; returns its URL. */
async function ensureEmbeddedDatabase(adminUrl: string): Promise<string> {
  const client = new pg.Client({ connectionString: adminUrl });
  client.on('error', () => {}); // a lost server fails the query in flight; no unhandled 'error'
  await client.connect();
  try {
    const r = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [EMBEDDED_DATABASE]);
    if (r.rowCount === 0) await client.query(`CREATE DATABASE ${EMBEDDED_DATABASE}`);
  } finally {
    await client.end();
  }
  const u = new URL(adminUrl);
  u.pathname = `/${EMBEDDED_DATABASE}`;
  return u.toString();
}

/** What start-up says when the embedded cluster lives outside the data directory (root, private directory). */
export function clusterLocationNotice(server: EmbeddedServer): string | undefined {
  if (!server.relocated) return undefined;
  const why = server.relocated.blocked ? `the "${EMBEDDED_OS_USER}" OS user it runs as cannot enter ${server.relocated.blocked}` : 'it was moved there before';
  return `embedded PostgreSQL cluster at ${server.clusterDir} (${why}; recorded in ${server.relocated.record}); everything else stays in ${dirname(server.dataDir)}`;
}

/** Dev bootstrap: the embedded PostgreSQL server under dataDir/pg and the URL of its `paylog` database. */
export async function startEmbeddedDatabase(dataDir: string): Promise<{ server: EmbeddedServer; ownerUrl: string }> {
  // Its own process group: the service stops it after its final checkpoint (src/main.ts).
  const server = await startEmbeddedPostgres({ dataDir: join(dataDir, 'pg'), ownedRoot: dataDir, ownProcessGroup: true });
  try {
    return { server, ownerUrl: await ensureEmbeddedDatabase(server.adminUrl) };
  } catch (e) {
    await server.stop().catch(() => {});
    throw e;
  }
}

/**
 * Every pool connection is time-bounded and survives losing its server (a restart is a 503
 * with Retry-After while it lasts, then the pool reconnects).
 */
function poolOptionsOf(config: Config, logger: Logger): PoolOptions {
  return {
    timeouts: {
      connectTimeoutMs: config.budgets.dbConnectTimeoutMs,
      statementTimeoutMs: config.budgets.dbStatementTimeoutMs,
      lockTimeoutMs: config.budgets.dbLockTimeoutMs,
      idleInTransactionTimeoutMs: config.budgets.dbIdleInTransactionTimeoutMs,
    },
    onConnectionError: (e: Error) => logger.warn({ error: errorForLog(e) }, 'database connection lost; it will be reopened'),
  };
}

/** Database: external (DATABASE_URL) or embedded under dataDir/pg; migrated; bootstrap pool open. */
export async function openDatabase(config: Config, logger: Logger, cleanups: Cleanups): Promise<DatabaseStep> {
  let ownerUrl = config.databaseUrl;
  if (!ownerUrl) {
    const embedded = await startEmbeddedDatabase(config.dataDir);
    cleanups.push(() => embedded.server.stop());
    ownerUrl = embedded.ownerUrl;
    const notice = clusterLocationNotice(embedded.server);
    if (notice) logger.info({ cluster: embedded.server.clusterDir }, notice);
  }
  await applyMigrations(ownerUrl);
  const poolOptions = poolOptionsOf(config, logger);
  // Bootstrap pool (owner session, role paylog_app) until the service login exists.
  const current = config.appDatabaseUrl
    ? { database: openAppDatabase(config.appDatabaseUrl, { ...poolOptions, role: null }), login: { url: config.appDatabaseUrl, role: null } }
    : { database: openAppDatabase(ownerUrl, poolOptions), login: { url: ownerUrl, role: APP_ROLE } };
  cleanups.push(async () => current.database.close());
  return { ownerUrl, poolOptions, current };
}
