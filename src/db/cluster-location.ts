/**
 * Where an embedded PostgreSQL cluster lives: `<dataDir>/cluster`, or — running as root with a
 * data directory the `postgres` OS user cannot reach (a clone under /root, mode 0700) — a
 * directory of its own under RELOCATED_CLUSTER_BASE, recorded in `<dataDir>/cluster-location`
 * so every later start (and every tool reading `postmaster.pid`) finds it. Used by
 * src/db/embedded.ts.
 *
 * Contract: only directories created here change owner or mode; a base directory that exists is
 * used only if root owns it and nobody else may write to it.
 */
import { randomBytes, createHash } from 'node:crypto';
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';

class ClusterLocationError extends Error {
  override readonly name = 'ClusterLocationError';
}

/**
 * Running as root with a data directory the `postgres` user cannot reach: where the cluster goes
 * (created by paylog, root-owned, mode 0711; one directory per data directory inside it).
 */
export const RELOCATED_CLUSTER_BASE = '/var/lib/paylog-postgres';
/** The file in the embedded data directory that records where a relocated cluster lives. */
export const CLUSTER_LOCATION_FILE = 'cluster-location';
/**
 * Where the cluster of the embedded data directory `dataDir` is: `<dataDir>/cluster`, or the
 * relocated one recorded in `<dataDir>/cluster-location`.
 */
export function embeddedClusterDir(dataDir: string): string {
  const record = join(dataDir, CLUSTER_LOCATION_FILE);
  if (!existsSync(record)) return join(dataDir, 'cluster');
  const dir = readFileSync(record, 'utf8').trim();
  if (!isAbsolute(dir) || dirname(dir) !== RELOCATED_CLUSTER_BASE) {
    throw new ClusterLocationError(`${record} must name a directory directly under ${RELOCATED_CLUSTER_BASE} (it says ${JSON.stringify(dir)})`);
  }
  return dir;
}

/**
 * RELOCATED_CLUSTER_BASE, created root-owned with mode 0711 (the server's user may pass, not
 * list) if missing; an existing one is used only if root owns it and nobody else may write to it.
 */
export function ensureRelocationBase(): void {
  if (!existsSync(RELOCATED_CLUSTER_BASE)) {
    mkdirSync(RELOCATED_CLUSTER_BASE, { recursive: true, mode: 0o711 });
    chmodSync(RELOCATED_CLUSTER_BASE, 0o711);
  }
  const st = lstatSync(RELOCATED_CLUSTER_BASE);
  if (!st.isDirectory() || st.uid !== 0 || (st.mode & 0o022) !== 0) {
    throw new ClusterLocationError(`refusing to use ${RELOCATED_CLUSTER_BASE}: it must be a directory owned by root and not writable by group or others`);
  }
}

/**
 * First start of a relocated cluster: a new `<RELOCATED_CLUSTER_BASE>/<digest of dataDir>-<random>`,
 * recorded in `<dataDir>/cluster-location`. The random part keeps a fresh data directory at the
 * same path from ever reusing an old cluster.
 */
export function relocatedCluster(dataDir: string): string {
  const record = join(dataDir, CLUSTER_LOCATION_FILE);
  const tag = createHash('sha256').update(dataDir).digest('hex').slice(0, 12);
  const dir = join(RELOCATED_CLUSTER_BASE, `${tag}-${randomBytes(4).toString('hex')}`);
  writeFileSync(record, `${dir}\n`, { mode: 0o600 });
  return dir;
}

