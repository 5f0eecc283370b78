/**
 * The production start: `npm run build` emits `dist/main.js`, and `node dist/main.js` (no tsx)
 * runs from a directory of its own with the embedded defaults (./data). As root the directory
 * is mode 0700, like a clone under /root: the PostgreSQL cluster moves, nothing else does.
 *
 * - With two workers, consecutive scrapes of /metrics agree on the cluster-wide counters
 *   (whichever worker takes the scrape), and Node's process metrics are labelled by worker.
 * - SIGTERM (two workers) and SIGINT (one process), sent to that one process alone, stop
 *   everything it started (workers, PostgreSQL and its children; the port closes) with exit
 *   code 0, and the final checkpoint covers every acknowledged submission: after the stop, the
 *   signer state's checkpoint is exactly the stored tree.
 *
 * The build is reused when dist/main.js is newer than every file in src/ (else built here).
 */
import { spawn, spawnSync, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import pg from 'pg';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EMBEDDED_DATABASE } from '../src/app.js';
import { freePort, startEmbeddedPostgres } from '../src/db/embedded.js';
import { embeddedClusterDir } from '../src/db/cluster-location.js';
import { cardTransaction } from './helpers/paylog.js';

const ROOT = resolve(import.meta.dirname, '..');
const ENTRY = join(ROOT, 'dist', 'main.js');
const asRoot = process.getuid?.() === 0;
/** The test's own bounds (the service's budget is SHUTDOWN_BUDGET_MS, past which it exits 1). */
const READY_WAIT_MS = 150_000;
const EXIT_WAIT_MS = 40_000;
/** How long stopped processes may take to leave the process table (5 s, as 50 polls, was short on a loaded machine). */
const ORPHANS_GONE_MS = 30_000;
const BUILD_TIMEOUT_MS = 400_000;

function newestMtime(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) newest = Math.max(newest, statSync(join(e.parentPath, e.name)).mtimeMs);
  }
  return newest;
}

beforeAll(() => {
  const stale = !existsSync(ENTRY) || statSync(ENTRY).mtimeMs < Math.max(newestMtime(join(ROOT, 'src')), statSync(join(ROOT, 'tsconfig.build.json')).mtimeMs);
  if (!stale) return;
  const r = spawnSync('npm', ['run', 'build'], { cwd: ROOT, encoding: 'utf8', timeout: BUILD_TIMEOUT_MS });
  if (r.status !== 0) throw new Error(`npm run build failed (${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}`);
}, BUILD_TIMEOUT_MS + 10_000);

interface Running {
  child: ChildProcess;
  cwd: string;
  dataDir: string;
  url: string;
  port: number;
  tls: { ca: Buffer; cert: Buffer; key: Buffer };
  stderr: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const started: Running[] = [];
afterAll(async () => {
  // A run that did not stop (a failed or skipped test): stopped the way it is meant to be, then
  // for certain (the embedded server has a process group of its own, so it is stopped by pid).
  for (const r of started) {
    if (r.child.exitCode === null && r.child.signalCode === null) {
      r.child.kill('SIGTERM');
      await Promise.race([r.exit, new Promise((res) => setTimeout(res, EXIT_WAIT_MS).unref())]);
      r.child.kill('SIGKILL');
    }
    const pidFile = join(embeddedClusterDir(join(r.dataDir, 'pg')), 'postmaster.pid');
    if (existsSync(pidFile)) {
      try {
        process.kill(Number(readFileSync(pidFile, 'utf8').split('\n')[0]), 'SIGQUIT');
      } catch {
        // already gone
      }
    }
    const record = join(r.dataDir, 'pg', 'cluster-location');
    if (existsSync(record)) rmSync(readFileSync(record, 'utf8').trim(), { recursive: true, force: true });
    rmSync(r.cwd, { recursive: true, force: true });
  }
}, EXIT_WAIT_MS * 2);

async function get(url: string, ca: Buffer): Promise<{ status: number; text: string }> {
  const dispatcher = new Agent({ connect: { ca } });
  try {
    const r = await request(url, { dispatcher, headersTimeout: 5_000, bodyTimeout: 5_000 });
    return { status: r.statusCode, text: await r.body.text() };
  } finally {
    await dispatcher.close();
  }
}

/** `node dist/main.js` in a new private directory (mode 0700), embedded defaults; resolves when every worker listens. */
async function startProduction(workers: number): Promise<Running> {
  const cwd = mkdtempSync(join(tmpdir(), 'paylog-prod-')); // mode 0700
  const port = await freePort();
  const env: NodeJS.ProcessEnv = { ...process.env, PAYLOG_PORT: String(port), PAYLOG_WORKERS: String(workers), PAYLOG_LOG_LEVEL: 'warn', PAYLOG_PROBE_LIMIT_PER_HOUR: '100000' };
  for (const k of ['DATABASE_URL', 'PAYLOG_APP_DATABASE_URL', 'PAYLOG_DATA_DIR', 'AWS_ENDPOINT_URL_KMS', 'AWS_REGION', 'PAYLOG_HOST', 'NODE_OPTIONS']) delete env[k];
  const child = spawn(process.execPath, [ENTRY], { cwd, env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
  const dataDir = join(cwd, 'data');
  const url = `https://127.0.0.1:${port}`;
  const running: Running = { child, cwd, dataDir, url, port, tls: undefined as never, stderr: () => stderr, exit };
  started.push(running);
  const t0 = Date.now();
  while (Date.now() - t0 < READY_WAIT_MS) {
    if (child.exitCode !== null) throw new Error(`node dist/main.js exited during start-up:\n${stderr}`);
    const caFile = join(dataDir, 'pki', 'ca.pem');
    const r = existsSync(caFile) ? await get(`${url}/readyz`, readFileSync(caFile)).catch(() => undefined) : undefined;
    const w = r?.status === 200 ? (JSON.parse(r.text) as { details?: { workers?: { listening: number } } }).details?.workers : undefined;
    if (r?.status === 200 && (workers === 1 || w?.listening === workers)) {
      const pki = join(dataDir, 'pki');
      running.tls = { ca: readFileSync(join(pki, 'ca.pem')), cert: readFileSync(join(pki, 'checkout.pem')), key: readFileSync(join(pki, 'checkout-key.pem')) };
      return running;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`not ready within ${READY_WAIT_MS} ms:\n${stderr}`);
}

function submit(r: Running, agent: Agent): Promise<{ status: number; logIndex?: number }> {
  return request(`${r.url}/v1/transactions`, {
    method: 'POST',
    dispatcher: agent,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(cardTransaction()),
    headersTimeout: 10_000,
    bodyTimeout: 10_000,
  }).then(async (res) => ({ status: res.statusCode, ...((res.statusCode === 201 ? await res.body.json() : (await res.body.text(), {})) as { logIndex?: number }) }));
}

/** Every process below `root` (/proc), at this moment. */
function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      (children.get(ppid) ?? children.set(ppid, []).get(ppid)!).push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  const out: number[] = [];
  const queue = [...(children.get(root) ?? [])];
  while (queue.length > 0) {
    const pid = queue.pop()!;
    out.push(pid);
    queue.push(...(children.get(pid) ?? []));
  }
  return out;
}

/** A process that exists and is not a zombie. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

function portRefuses(port: number): Promise<boolean> {
  return new Promise((resolveRefused) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => (s.destroy(), resolveRefused(false)));
    s.once('error', () => resolveRefused(true));
  });
}

/** Sends `signal` to the one process and checks what is left; returns the final checkpoint's size and the stored tree's. */
async function stopWith(r: Running, signal: NodeJS.Signals): Promise<{ checkpointSize: number; storedSize: number }> {
  const before = descendants(r.child.pid!);
  const postmaster = Number(readFileSync(join(embeddedClusterDir(join(r.dataDir, 'pg')), 'postmaster.pid'), 'utf8').split('\n')[0]);
  expect(before).toContain(postmaster);
  process.kill(r.child.pid!, signal); // that process alone, not its group
  const bounded = new Promise<'timeout'>((res) => setTimeout(() => res('timeout'), EXIT_WAIT_MS).unref());
  const exit = await Promise.race([r.exit, bounded]);
  expect(exit, r.stderr()).toEqual({ code: 0, signal: null });
  expect(r.stderr()).toContain(`paylog: stopped`);
  // Orphans are reaped by init; give them a moment to leave the table, bounded.
  for (const deadline = Date.now() + ORPHANS_GONE_MS; Date.now() < deadline && before.some(alive); ) await new Promise((res) => setTimeout(res, 100));
  expect(before.filter(alive)).toEqual([]);
  expect(await portRefuses(r.port)).toBe(true);
  // The signer's state: the last checkpoint it signed (origin, size, root hash, signatures).
  const checkpointSize = Number(readFileSync(join(r.dataDir, 'signer', 'last-checkpoint'), 'utf8').split('\n')[1]);
  const server = await startEmbeddedPostgres({ dataDir: join(r.dataDir, 'pg'), ownedRoot: r.dataDir });
  try {
    const c = new pg.Client({ connectionString: server.adminUrl.replace(/\/postgres$/, `/${EMBEDDED_DATABASE}`) });
    await c.connect();
    const storedSize = Number((await c.query<{ n: string }>('SELECT max(size)::text AS n FROM tree_heads')).rows[0]!.n);
    const signed = Number((await c.query<{ n: string }>('SELECT max(size)::text AS n FROM checkpoints')).rows[0]!.n);
    await c.end();
    expect(signed).toBe(checkpointSize);
    return { checkpointSize, storedSize };
  } finally {
    await server.stop();
  }
}

/** Pids holding established connections on `port` (Linux `ss`). */
function connectionOwners(port: number): Set<string> {
  const out = execFileSync('ss', ['-tnpH', 'state', 'established', `( sport = :${port} )`]).toString();
  return new Set([...out.matchAll(/pid=(\d+)/g)].map((m) => m[1]!));
}

/** `name{labels} value` lines of one metric, as a map from the label part to the value. */
function samples(text: string, name: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^(\S+?)(\{[^}]*\})?\s+(\S+)$/.exec(line);
    if (m && m[1] === name) out.set(m[2] ?? '', Number(m[3]));
  }
  return out;
}

describe('node dist/main.js with two workers', () => {
  let svc: Running;
  const acknowledged: number[] = [];
  beforeAll(async () => {
    svc = await startProduction(2);
  }, READY_WAIT_MS + 10_000);

  it.skipIf(!asRoot)('as root from a mode-0700 directory: ./data stays, only the PostgreSQL cluster moves, and start-up says where', () => {
    expect(svc.stderr()).toMatch(/embedded PostgreSQL cluster at \/var\/lib\/paylog-postgres\/[0-9a-f]{12}-[0-9a-f]{8} \(the "postgres" OS user/);
    expect(existsSync(join(svc.dataDir, 'pki', 'ca.pem'))).toBe(true);
    expect(existsSync(join(svc.dataDir, 'pg', 'cluster'))).toBe(false);
    expect(statSync(svc.cwd).mode & 0o777).toBe(0o700);
    expect(statSync(svc.dataDir).mode & 0o777).toBe(0o700);
    expect(statSync(join(svc.dataDir, 'pg')).mode & 0o777).toBe(0o700);
    expect(dirname(embeddedClusterDir(join(svc.dataDir, 'pg')))).toBe('/var/lib/paylog-postgres');
  });

  it('consecutive scrapes of /metrics agree on cluster-wide counters, whichever worker answers', async () => {
    const agents = Array.from({ length: 8 }, () => new Agent({ connect: { ...svc.tls }, connections: 1 }));
    try {
      const first = await Promise.all(agents.map((a) => submit(svc, a)));
      expect(connectionOwners(svc.port).size).toBe(2); // both workers hold connections
      const more = await Promise.all(Array.from({ length: 24 }, (_, i) => submit(svc, agents[i % agents.length]!)));
      const all = [...first, ...more];
      expect(all.map((r) => r.status)).toEqual(all.map(() => 201));
      acknowledged.push(...all.map((r) => r.logIndex!));
    } finally {
      await Promise.all(agents.map((a) => a.close()));
    }
    // Each scrape on a new connection: the primary hands them to both workers.
    const scrapes: string[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await get(`${svc.url}/metrics`, svc.tls.ca);
      expect(r.status).toBe(200);
      scrapes.push(r.text);
    }
    const created = scrapes.map((t) => samples(t, 'paylog_http_requests_total').get('{method="POST",route="/v1/transactions",status="201"}'));
    expect(created).toEqual(scrapes.map(() => 32));
    const logSizes = scrapes.map((t) => samples(t, 'paylog_log_size').get(''));
    expect(new Set(logSizes).size).toBe(1);
    expect(logSizes[0]).toBeGreaterThan(Math.max(...acknowledged));
    const batches = scrapes.map((t) => samples(t, 'paylog_log_batch_size_count').get(''));
    expect(new Set(batches).size).toBe(1);
    // Every scrape is counted once, cluster-wide: the count never steps back.
    const scraped = scrapes.map((t) => samples(t, 'paylog_http_requests_total').get('{method="GET",route="/metrics",status="200"}') ?? 0);
    expect([...scraped].sort((a, b) => a - b)).toEqual(scraped);
    // Node's process metrics: one series per worker, never summed.
    const cpu = samples(scrapes.at(-1)!, 'paylog_process_cpu_user_seconds_total');
    expect([...cpu.keys()].sort()).toEqual(['{worker="0"}', '{worker="1"}']);
  });

  it('SIGTERM to the one process: in-flight submissions finish, the final checkpoint covers them, nothing is left running, exit 0', async () => {
    const agents = Array.from({ length: 4 }, () => new Agent({ connect: { ...svc.tls }, connections: 1 }));
    const inFlight = Array.from({ length: 12 }, (_, i) => submit(svc, agents[i % agents.length]!).catch(() => ({ status: 0 })));
    await new Promise((r) => setTimeout(r, 20));
    const stopped = stopWith(svc, 'SIGTERM');
    const answers = await Promise.all(inFlight);
    await Promise.all(agents.map((a) => a.destroy()));
    for (const a of answers) if (a.status === 201) acknowledged.push((a as { logIndex: number }).logIndex);
    const { checkpointSize, storedSize } = await stopped;
    expect(checkpointSize).toBe(storedSize);
    expect(checkpointSize).toBeGreaterThan(Math.max(...acknowledged));
  });
});

describe('node dist/main.js as one process', () => {
  it('SIGINT to the process: the final checkpoint covers the submission, PostgreSQL is stopped, exit 0', async () => {
    const svc = await startProduction(1);
    const agent = new Agent({ connect: { ...svc.tls } });
    const r = await submit(svc, agent);
    await agent.close();
    expect(r.status).toBe(201);
    const { checkpointSize, storedSize } = await stopWith(svc, 'SIGINT');
    expect(checkpointSize).toBe(storedSize);
    expect(checkpointSize).toBeGreaterThan(r.logIndex!);
  }, READY_WAIT_MS + EXIT_WAIT_MS + 30_000);
});
