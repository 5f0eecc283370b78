/**
 * The paylog service under test, run as a CHILD PROCESS (`node --import tsx src/main.ts`, the
 * same as `tsx src/main.ts`) so the load generator never shares the service's event loop.
 * Defaults: embedded PostgreSQL + local KMS under a fresh temp data dir, dev PKI. With
 * `DATABASE_URL` set in the bench's environment (a superuser URL of an external server, e.g.
 * PostgreSQL 15), every service gets a fresh database `paylog_bench_<hex>` on that server instead
 * (created before start, dropped after stop) and no embedded PostgreSQL runs.
 * `opts.root` runs the service of another checkout (the `--base` comparison) with this driver.
 *
 * Contract: `startService()` resolves once `/readyz` answers 200; `stop()` sends SIGTERM (the
 * service finishes in-flight batches and stops PostgreSQL), escalates to SIGKILL after a grace
 * period, then removes the data dir. Safe to call twice.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { Agent, request } from 'undici';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../src/db/embedded.js';
import { embeddedClusterDir } from '../../src/db/cluster-location.js';
import { createDatabase, dropDatabase } from '../../src/db/connection.js';
import { EMBEDDED_DATABASE } from '../../src/app.js';

export const REPO_ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
export const READY_TIMEOUT_MS = 120_000;
export const READY_POLL_MS = 200;
export const STOP_GRACE_MS = 20_000;
const STDERR_TAIL_CHARS = 4000;

export interface ServiceTls {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

export interface ServiceHandle {
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly dataDir: string;
  readonly env: Readonly<Record<string, string>>;
  /** The dev `checkout` principal's client certificate + the dev CA. */
  readonly checkoutTls: ServiceTls;
  /** Superuser URL of the PostgreSQL server the service runs on (embedded: database `postgres`; external: DATABASE_URL). */
  pgAdminUrl(): string;
  /** Superuser URL of the service's own database on that server. */
  serviceDbUrl(): string;
  /** `embedded PostgreSQL` or `external PostgreSQL (DATABASE_URL)`. */
  readonly database: string;
  /** CPU seconds used so far by the service process and by its PostgreSQL server (null: no /proc). */
  cpuSeconds(): { service: number | null; postgres: number | null };
  /** Null while running; otherwise how the child exited and the tail of its stderr. */
  exitInfo(): string | null;
  /** GET without a client certificate (for /metrics, /readyz). */
  get(path: string): Promise<{ status: number; text: string }>;
  stop(): Promise<void>;
}

/** `opts.env` adds service settings (e.g. PAYLOG_BATCH_LINGER_MS, from `npm run bench -- --env K=V`). */
export async function startService(opts: { env?: Record<string, string>; progress?: (m: string) => void; root?: string } = {}): Promise<ServiceHandle> {
  const root = opts.root ?? REPO_ROOT;
  const external = process.env.DATABASE_URL || undefined;
  const dbName = `paylog_bench_${randomBytes(4).toString('hex')}`;
  const externalDbUrl = external ? await createDatabase(external, dbName) : undefined;
  const dataDir = mkdtempSync(join(tmpdir(), 'paylog-bench-'));
  const host = '127.0.0.1';
  const port = await freePort(host);
  const env: Record<string, string> = {
    PAYLOG_DATA_DIR: dataDir,
    PAYLOG_HOST: host,
    PAYLOG_PORT: String(port),
    PAYLOG_LOG_LEVEL: 'warn',
    // The throughput sections submit a different card per request (transactionBodies), so the
    // probe limit (issue 17) and its one statement per submission run as in production; some
    // sections (client-side encryption) reuse one card thousands of times, which the default
    // limit would refuse after 20 an hour, so the bench lifts the limit itself, not its cost.
    PAYLOG_PROBE_LIMIT_PER_HOUR: '100000000',
    ...opts.env,
  };
  // Never let an outer DATABASE_URL / AWS setting redirect the benchmark to real infrastructure.
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
  for (const k of ['DATABASE_URL', 'PAYLOG_APP_DATABASE_URL', 'AWS_ENDPOINT_URL_KMS', 'AWS_REGION']) delete childEnv[k];
  if (externalDbUrl) childEnv.DATABASE_URL = externalDbUrl;

  // BENCH_CPU_PROF_DIR=<dir>: the child (and its cluster workers, which inherit execArgv) write V8
  // CPU profiles there on exit — the way the issue's "CPU profile at concurrency 32" was taken.
  const profDir = process.env.BENCH_CPU_PROF_DIR;
  const profArgs = profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [];
  const child = spawn(process.execPath, [...profArgs, '--import', 'tsx', 'src/main.ts'], {
    cwd: root,
    env: childEnv,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderrTail = '';
  child.stderr?.on('data', (c: Buffer) => {
    stderrTail = (stderrTail + c.toString('utf8')).slice(-STDERR_TAIL_CHARS);
  });
  let exited: { code: number | null; signal: string | null } | undefined;
  const exitPromise = new Promise<void>((r) => child.once('exit', (code, signal) => ((exited = { code, signal }), r())));

  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      await terminate(child, exitPromise, () => exited !== undefined);
      rmSync(dataDir, { recursive: true, force: true });
      if (external) await dropDatabase(external, dbName).catch(() => {});
    })());

  const url = `https://${host}:${port}`;
  const get = (path: string) => httpsGet(url + path, caOrUndefined(dataDir));
  try {
    await waitReady(get, () => exited, () => stderrTail, opts.progress, external ? 'external PostgreSQL' : 'embedded PostgreSQL');
  } catch (e) {
    await stop();
    throw e;
  }
  const pki = join(dataDir, 'pki');
  const checkoutTls: ServiceTls = {
    ca: readFileSync(join(pki, 'ca.pem')),
    cert: readFileSync(join(pki, 'checkout.pem')),
    key: readFileSync(join(pki, 'checkout-key.pem')),
  };
  const adminUrl = external ?? embeddedAdminUrl(dataDir);
  const serviceDbUrl = externalDbUrl ?? adminUrl.replace(/\/postgres$/, `/${EMBEDDED_DATABASE}`);
  // The server's postmaster: the embedded one's pid file, or (external) its data directory's, when this user can read it.
  const postmaster = external ? await externalPostmasterPid(external) : postmasterPid(dataDir);
  const cpuSeconds = () => ({
    service: child.pid === undefined ? null : serviceCpuSeconds(child.pid, postmaster),
    postgres: postmaster === null ? null : treeCpuSeconds(postmaster, null),
  });
  const exitInfo = () => (exited ? `paylog child exited (code ${exited.code}, signal ${exited.signal}); stderr tail:\n${stderrTail}` : null);
  const database = external ? 'external PostgreSQL (DATABASE_URL)' : 'embedded PostgreSQL';
  return { url, host, port, dataDir, env, checkoutTls, database, pgAdminUrl: () => adminUrl, serviceDbUrl: () => serviceDbUrl, cpuSeconds, exitInfo, get, stop };
}

function caOrUndefined(dataDir: string): Buffer | undefined {
  try {
    return readFileSync(join(dataDir, 'pki', 'ca.pem'));
  } catch {
    return undefined; // PKI not written yet (still starting)
  }
}

function workersOf(readyz: string): { listening: number; configured: number } | undefined {
  try {
    const w = (JSON.parse(readyz) as { details?: { workers?: { listening?: unknown; configured?: unknown } } }).details?.workers;
    return typeof w?.listening === 'number' && typeof w.configured === 'number' ? { listening: w.listening, configured: w.configured } : undefined;
  } catch {
    return undefined;
  }
}

async function waitReady(
  get: (p: string) => Promise<{ status: number; text: string }>,
  exited: () => { code: number | null; signal: string | null } | undefined,
  stderrTail: () => string,
  progress?: (m: string) => void,
  database = 'embedded PostgreSQL',
): Promise<void> {
  const t0 = Date.now();
  progress?.(`starting paylog child process (${database} + local KMS)…`);
  while (Date.now() - t0 < READY_TIMEOUT_MS) {
    const x = exited();
    if (x) throw new Error(`paylog exited during start-up (code ${x.code}, signal ${x.signal}):\n${stderrTail()}`);
    const r = await get('/readyz').catch(() => undefined);
    // With several workers, wait until all listen: the load generator's connections are spread
    // only over workers already listening, and it keeps them for the whole run.
    const workers = r?.status === 200 ? workersOf(r.text) : undefined;
    if (r?.status === 200 && (!workers || workers.listening >= workers.configured)) {
      progress?.(`paylog ready in ${((Date.now() - t0) / 1000).toFixed(1)} s${workers ? ` (${workers.listening} workers listening)` : ''}`);
      return;
    }
    await new Promise((res) => setTimeout(res, READY_POLL_MS));
  }
  throw new Error(`paylog not ready after ${READY_TIMEOUT_MS} ms:\n${stderrTail()}`);
}

async function terminate(child: ChildProcess, exit: Promise<void>, hasExited: () => boolean): Promise<void> {
  if (hasExited()) return;
  child.kill('SIGTERM'); // graceful: in-flight batches, then PostgreSQL stop
  const timer = new Promise<boolean>((r) => setTimeout(() => r(false), STOP_GRACE_MS).unref());
  const done = await Promise.race([exit.then(() => true), timer]);
  if (!done && !hasExited()) {
    child.kill('SIGKILL');
    await exit;
  }
}

/** Reads the embedded cluster's superuser password and port (postmaster.pid line 4). */
export function embeddedAdminUrl(dataDir: string): string {
  const pgDir = join(dataDir, 'pg');
  const password = readFileSync(join(pgDir, 'superuser-password'), 'utf8').trim();
  const pid = readFileSync(join(embeddedClusterDir(pgDir), 'postmaster.pid'), 'utf8').split('\n');
  const port = Number(pid[3]);
  if (!Number.isInteger(port) || port <= 0) throw new Error('cannot read the PostgreSQL port from postmaster.pid');
  return `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;
}

// ---------------------------------------------------------------- CPU accounting (Linux /proc)

/** Linux USER_HZ; 100 on every mainstream kernel build. */
const CLOCK_TICKS_PER_SECOND = 100;

/** Fields after the `(comm)` of /proc/<pid>/stat: [0]=state, [1]=ppid, ..., [11]=utime, [12]=stime, [13]=cutime, [14]=cstime. */
function statFields(pid: number): string[] | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** utime + stime of one process, in seconds (null when /proc is not available). */
export function processCpuSeconds(pid: number): number | null {
  const f = statFields(pid);
  if (!f) return null;
  return (Number(f[11]) + Number(f[12])) / CLOCK_TICKS_PER_SECOND;
}

/**
 * CPU seconds of the process tree under `root` — every descendant (the service's cluster workers,
 * anything they start), plus the CPU of descendants that already exited and were reaped
 * (`cutime`/`cstime`) — leaving out the subtree of `exclude` (the embedded PostgreSQL server,
 * itself a child of the service). Null without /proc.
 */
function treeCpuSeconds(root: number, exclude: number | null): number | null {
  const rootFields = statFields(root);
  if (!rootFields) return null;
  const children = new Map<number, number[]>();
  const fields = new Map<number, string[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    const f = statFields(pid);
    if (!f) continue;
    fields.set(pid, f);
    const ppid = Number(f[1]);
    (children.get(ppid) ?? children.set(ppid, []).get(ppid)!).push(pid);
  }
  const ticks = (f: string[], reaped: boolean) => Number(f[11]) + Number(f[12]) + (reaped ? Number(f[13]) + Number(f[14]) : 0);
  // The excluded server's own reaped children are counted in its cutime, never in ours (it is never reaped while measured).
  let total = ticks(rootFields, true);
  const queue = [...(children.get(root) ?? [])];
  while (queue.length > 0) {
    const pid = queue.pop()!;
    if (pid === exclude) continue;
    total += ticks(fields.get(pid)!, true);
    queue.push(...(children.get(pid) ?? []));
  }
  return total / CLOCK_TICKS_PER_SECOND;
}

/** CPU seconds of the paylog child and all its descendants (workers), not counting the embedded PostgreSQL server. */
export function serviceCpuSeconds(pid: number, postmaster: number | null): number | null {
  return treeCpuSeconds(pid, postmaster);
}

function postmasterPid(dataDir: string): number | null {
  try {
    return Number(readFileSync(join(embeddedClusterDir(join(dataDir, 'pg')), 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch {
    return null;
  }
}

/** The postmaster of an external server on this machine (its data directory's postmaster.pid), or null. */
async function externalPostmasterPid(adminUrl: string): Promise<number | null> {
  const c = new pg.Client({ connectionString: adminUrl });
  try {
    await c.connect();
    const dir = (await c.query<{ d: string }>('SELECT current_setting($1) AS d', ['data_directory'])).rows[0]?.d;
    if (!dir) return null;
    const pid = Number(readFileSync(join(dir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 && statFields(pid) ? pid : null;
  } catch {
    return null; // another machine, or not readable: PostgreSQL CPU is then not reported
  } finally {
    await c.end().catch(() => {});
  }
}

async function httpsGet(url: string, ca: Buffer | undefined): Promise<{ status: number; text: string }> {
  const dispatcher = new Agent({ connect: ca ? { ca } : { rejectUnauthorized: false } });
  try {
    const res = await request(url, { method: 'GET', dispatcher, headersTimeout: 5000, bodyTimeout: 5000 });
    return { status: res.statusCode, text: await res.body.text() };
  } finally {
    await dispatcher.destroy();
  }
}

// ---------------------------------------------------------------- Prometheus histogram reading

export interface HistogramSnapshot {
  /** Cumulative counts per upper bound (`le`), including `+Inf`. */
  buckets: Map<string, number>;
  sum: number;
  count: number;
}

/** Parses one un-labelled Prometheus histogram (`<name>_bucket/_sum/_count`) from exposition text. */
export function parseHistogram(text: string, name: string): HistogramSnapshot {
  const buckets = new Map<string, number>();
  let sum = 0;
  let count = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}_bucket{`)) {
      const m = /le="([^"]+)"\}\s+(\S+)/.exec(line);
      if (m) buckets.set(m[1]!, Number(m[2]));
    } else if (line.startsWith(`${name}_sum `)) sum = Number(line.slice(name.length + 5));
    else if (line.startsWith(`${name}_count `)) count = Number(line.slice(name.length + 7));
  }
  return { buckets, sum, count };
}

/** `after - before` (a histogram of what happened in between). */
export function diffHistogram(after: HistogramSnapshot, before: HistogramSnapshot): HistogramSnapshot {
  const buckets = new Map<string, number>();
  for (const [le, v] of after.buckets) buckets.set(le, v - (before.buckets.get(le) ?? 0));
  return { buckets, sum: after.sum - before.sum, count: after.count - before.count };
}

/** Per-bucket (non-cumulative) counts as "≤le:n" pairs, empty buckets omitted. */
export function describeBuckets(h: HistogramSnapshot): string {
  const out: string[] = [];
  let prev = 0;
  for (const [le, cum] of h.buckets) {
    const n = cum - prev;
    prev = cum;
    if (n > 0) out.push(`≤${le}:${n}`);
  }
  return out.join(' ');
}
