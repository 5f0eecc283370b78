/**
 * One witness process per data directory. The witness's guarantee (tlog-witness §add-checkpoint:
 * never cosign a checkpoint inconsistent with one it already cosigned) rests on one process
 * checking and persisting `<dir>/state` under its in-memory per-origin lock; two processes on
 * one directory could each cosign a different fork. So the directory is locked.
 *
 * Contract:
 * - `<dir>/witness.lock` is created exclusively (O_CREAT|O_EXCL) and holds the holder's pid,
 *   host name and start time. A second process finds it and refuses, naming the directory and
 *   the holder pid.
 * - A lock left by a dead process on this host (kill(pid, 0) answers ESRCH) is stale and is
 *   taken over. The takeover itself runs under `<dir>/witness.lock.takeover`, created
 *   exclusively, and re-checks under it that the lock is still the same stale one before
 *   removing it, so two processes racing for a stale lock cannot both win. A takeover file left
 *   by a process that died during a takeover (a few system calls long) is never removed
 *   automatically: start-up refuses and says to delete it.
 * - A lock from another host (a shared file system) cannot be checked and is never taken over.
 * - `release()` removes the lock only if it is still this process's own.
 */
import { closeSync, fsyncSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';

export const WITNESS_LOCK_FILE = 'witness.lock';
export const WITNESS_TAKEOVER_FILE = 'witness.lock.takeover';
/** Attempts while another process is in the middle of a takeover (each TAKEOVER_RETRY_MS apart). */
const TAKEOVER_ATTEMPTS = 50;
const TAKEOVER_RETRY_MS = 20;

interface LockOwner {
  pid: number;
  host: string;
  startedAt: string;
}

export class DataDirLockedError extends Error {
  override readonly name = 'DataDirLockedError';
}

interface DataDirLock {
  path: string;
  owner: LockOwner;
  /** Removes the lock if it is still ours (idempotent). */
  release(): void;
}

function errno(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException).code;
}

/** Creates `path` exclusively with `content` (durably). False if it already exists. */
function createExclusive(path: string, content: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'wx', 0o600);
  } catch (e) {
    if (errno(e) === 'EEXIST') return false;
    throw e;
  }
  try {
    writeSync(fd, content);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return true;
}

function readRaw(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    if (errno(e) === 'ENOENT') return undefined;
    throw e;
  }
}

function parseOwner(raw: string): LockOwner | undefined {
  try {
    const o = JSON.parse(raw) as Partial<LockOwner>;
    if (Number.isSafeInteger(o.pid) && (o.pid as number) > 0 && typeof o.host === 'string' && typeof o.startedAt === 'string') return o as LockOwner;
  } catch {
    // not ours: handled as unreadable
  }
  return undefined;
}

/** kill(pid, 0): ESRCH means no such process; EPERM means it exists (another user's). */
function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return errno(e) === 'EPERM';
  }
}

type Found = { state: 'free' } | { state: 'held'; owner: LockOwner } | { state: 'stale'; raw: string; owner: LockOwner } | { state: 'foreign'; owner: LockOwner } | { state: 'unreadable'; raw: string };

function inspect(path: string): Found {
  const raw = readRaw(path);
  if (raw === undefined) return { state: 'free' };
  const owner = parseOwner(raw);
  if (owner === undefined) return { state: 'unreadable', raw };
  if (owner.host !== hostname()) return { state: 'foreign', owner };
  return processAlive(owner.pid) ? { state: 'held', owner } : { state: 'stale', raw, owner };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Locks `dir` for this process or throws DataDirLockedError naming the directory and holder.
 * `dir` must exist.
 */
export async function lockDataDir(dir: string): Promise<DataDirLock> {
  const path = join(dir, WITNESS_LOCK_FILE);
  const takeover = join(dir, WITNESS_TAKEOVER_FILE);
  const owner: LockOwner = { pid: process.pid, host: hostname(), startedAt: new Date().toISOString() };
  const content = `${JSON.stringify(owner)}\n`;
  const mine = (): DataDirLock => ({
    path,
    owner,
    release: () => {
      if (readRaw(path) === content) unlinkSync(path);
    },
  });
  for (let attempt = 0; attempt < TAKEOVER_ATTEMPTS; attempt++) {
    if (createExclusive(path, content)) return mine();
    const found = inspect(path);
    if (found.state === 'free') continue; // released between our open and our read
    if (found.state === 'held') {
      throw new DataDirLockedError(`witness data directory ${dir} is in use by process ${found.owner.pid} (since ${found.owner.startedAt}; lock file ${path}); one witness process per directory`);
    }
    if (found.state === 'foreign') {
      throw new DataDirLockedError(`witness data directory ${dir} is locked by process ${found.owner.pid} on host ${found.owner.host} (lock file ${path}); it cannot be checked from here: if that witness is gone, delete the lock file`);
    }
    if (found.state === 'unreadable') {
      throw new DataDirLockedError(`witness data directory ${dir} has a lock file ${path} that is not a witness lock: if no witness uses the directory, delete it`);
    }
    // Stale: take it over under the takeover file.
    if (!createExclusive(takeover, content)) {
      const t = readRaw(takeover);
      const tOwner = t === undefined ? undefined : parseOwner(t);
      if (t === undefined || (tOwner !== undefined && tOwner.host === hostname() && processAlive(tOwner.pid))) {
        await sleep(TAKEOVER_RETRY_MS); // another process is taking over right now
        continue;
      }
      throw new DataDirLockedError(
        `witness data directory ${dir}: a stale-lock takeover by process ${tOwner?.pid ?? '?'} did not finish (${takeover}); if no witness uses the directory, delete ${takeover}`,
      );
    }
    try {
      // Still the same stale lock? Then nobody else can have it: remove it and create ours.
      if (readRaw(path) === found.raw) unlinkSync(path);
      if (createExclusive(path, content)) return mine();
    } finally {
      unlinkSync(takeover);
    }
  }
  throw new DataDirLockedError(`witness data directory ${dir}: could not take the lock ${path} (another process kept taking it over)`);
}
