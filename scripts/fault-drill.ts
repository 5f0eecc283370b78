/**
 * Database fault drill (issue 7 "Done when"): paylog as a child process on an EXTERNAL
 * PostgreSQL managed by pg_ctl, under closed-loop load over mTLS, through
 *   fast       — `pg_ctl restart -m fast`
 *   immediate  — `pg_ctl restart -m immediate` (crash recovery on start)
 *   gap        — `pg_ctl stop -m fast`, a gap (default 5 s), `pg_ctl start`
 * For each fault it reports the answers (201/200/503, anything else), whether every 503 carried
 * Retry-After, the longest wait, when /readyz went 503 and back, and the time from "database
 * back" (pg_ctl returned, `-w`) to the first 201. Afterwards: every acknowledged transaction
 * stored at its index, dense indexes, the RFC 9162 root, `verify-log`, sample releases.
 *
 *   npx tsx scripts/fault-drill.ts --pgdata /tmp/pg15/data --admin-url postgres://postgres:…@127.0.0.1:55432/postgres
 *     [--pg-bin /usr/lib/postgresql/15/bin] [--pg-user postgres] [--pg-log FILE] [--concurrency 32]
 *     [--faults fast,immediate,gap] [--gap-ms 5000] [--steady-ms 2000] [--json]
 *
 * Each run creates a fresh database `paylog_drill_<hex>` on the server of --admin-url (kept
 * afterwards for inspection; its name is printed) and a fresh data dir (dev PKI, local KMS).
 * Run as root, pg_ctl runs as --pg-user (runuser). Exit 0 when every check passed, 1 otherwise.
 * Loopback only: the service listens on 127.0.0.1; DATABASE_URL should name a loopback server.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent, request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { BENCH_TEST_PAN } from './bench/throughput.js';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { Command } from 'commander';
import pg from 'pg';
import { freePort } from '../src/db/embedded.js';
import { createDatabase } from '../src/db/connection.js';
import { hashLeaf, rootFromLeafHashes } from '../src/log/merkle.js';
import { startLoad, type Answer, type LoadRun } from './drill/load.js';

const REPO_ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const READY_TIMEOUT_MS = 120_000;
/** Give up waiting for the first 201 after the database is back after this long. */
const RESUME_GIVE_UP_MS = 30_000;
const READYZ_POLL_MS = 100;
const FAULTS = ['fast', 'immediate', 'gap'] as const;
type Fault = (typeof FAULTS)[number];

const program = new Command()
  .requiredOption('--pgdata <dir>', 'data directory of the PostgreSQL cluster (pg_ctl -D)')
  .requiredOption('--admin-url <url>', 'superuser URL of the server; a fresh database is created on it for the run')
  .option('--pg-bin <dir>', 'directory holding pg_ctl', '/usr/lib/postgresql/15/bin')
  .option('--pg-user <user>', 'OS user pg_ctl runs as when this runs as root', 'postgres')
  .option('--pg-log <file>', 'server log file for pg_ctl -l', '/tmp/paylog-fault-drill-pg.log')
  .option('--concurrency <n>', 'concurrent clients', '32')
  .option('--faults <list>', 'comma-separated: fast, immediate, gap', FAULTS.join(','))
  .option('--gap-ms <ms>', 'database down time in the gap fault', '5000')
  .option('--steady-ms <ms>', 'load before each fault and after the first 201 once back', '2000')
  .option('--json', 'print the report as JSON')
  .parse();
const o = program.opts<{ pgdata: string; adminUrl: string; pgBin: string; pgUser: string; pgLog: string; concurrency: string; faults: string; gapMs: string; steadyMs: string; json?: boolean }>();
const concurrency = Number(o.concurrency);
const steadyMs = Number(o.steadyMs);
const faults = o.faults.split(',').map((f) => f.trim()) as Fault[];
for (const f of faults) if (!FAULTS.includes(f)) throw new Error(`unknown fault ${f}`);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function pgCtl(args: string[]): void {
  const cmd = join(o.pgBin, 'pg_ctl');
  const full = ['-D', o.pgdata, '-l', o.pgLog, '-w', '-t', '60', ...args];
  const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const r = asRoot ? spawnSync('runuser', ['-u', o.pgUser, '--', cmd, ...full], { encoding: 'utf8' }) : spawnSync(cmd, full, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`pg_ctl ${args.join(' ')} failed: ${r.stderr || r.stdout}`);
}

// ------------------------------------------------------------------ the service (child process)
const databaseName = `paylog_drill_${randomBytes(4).toString('hex')}`;
const databaseUrl = await createDatabase(o.adminUrl, databaseName);
const dataDir = mkdtempSync(join(tmpdir(), 'paylog-drill-'));
const port = await freePort();
const url = `https://127.0.0.1:${port}`;
const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
  cwd: REPO_ROOT,
  env: {
    ...process.env,
    DATABASE_URL: databaseUrl,
    PAYLOG_DATA_DIR: dataDir,
    PAYLOG_HOST: '127.0.0.1',
    PAYLOG_PORT: String(port),
    PAYLOG_LOG_LEVEL: 'error',
    PAYLOG_RELEASE_RATE_PER_MINUTE: '1000000',
  },
  stdio: ['ignore', 'ignore', 'pipe'],
});
let stderrTail = '';
child.stderr?.on('data', (c: Buffer) => (stderrTail = (stderrTail + c.toString('utf8')).slice(-4000)));
let exited: string | undefined;
child.once('exit', (code, signal) => (exited = `code ${code}, signal ${signal}`));

function get(path: string, agent?: Agent): Promise<{ status: number; headers: Record<string, unknown>; text: string }> {
  return new Promise((res, rej) => {
    const req = httpsRequest(url + path, { method: 'GET', ...(agent ? { agent } : { rejectUnauthorized: false, agent: false }), timeout: 15_000 }, (r) => {
      const chunks: Buffer[] = [];
      r.on('data', (c: Buffer) => chunks.push(c));
      r.on('end', () => res({ status: r.statusCode ?? 0, headers: r.headers, text: Buffer.concat(chunks).toString('utf8') }));
      r.on('error', rej);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', rej);
    req.end();
  });
}

const t0 = Date.now();
for (;;) {
  if (exited) throw new Error(`paylog exited during start-up (${exited}):\n${stderrTail}`);
  if ((await get('/readyz').catch(() => undefined))?.status === 200) break;
  if (Date.now() - t0 > READY_TIMEOUT_MS) throw new Error(`paylog not ready:\n${stderrTail}`);
  await sleep(200);
}
const pki = join(dataDir, 'pki');
const agentFor = (name: string) =>
  new Agent({ ca: readFileSync(join(pki, 'ca.pem')), cert: readFileSync(join(pki, `${name}.pem`)), key: readFileSync(join(pki, `${name}-key.pem`)), keepAlive: true, maxSockets: concurrency * 2 });
const anonymous = new Agent({ ca: readFileSync(join(pki, 'ca.pem')), keepAlive: true, maxSockets: 1 });
const checkout = agentFor('checkout');
const acme = agentFor('processor-acme');

function post(agent: Agent, path: string, body: unknown): Promise<Answer> {
  return new Promise((res, rej) => {
    const payload = JSON.stringify(body);
    const req = httpsRequest(url + path, { method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (r) => {
      const chunks: Buffer[] = [];
      r.on('data', (c: Buffer) => chunks.push(c));
      r.on('end', () => {
        let json: unknown;
        try {
          json = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
          json = undefined;
        }
        res({ status: r.statusCode ?? 0, retryAfter: r.headers['retry-after'] as string | undefined, json });
      });
      r.on('error', rej);
    });
    req.on('error', rej);
    req.end(payload);
  });
}

const makeBody = () => ({
  transactionId: `drill-${randomBytes(8).toString('hex')}`,
  processor: 'acme',
  amount: { value: 1000 + Math.floor(Math.random() * 9000), currency: 'EUR' },
  paymentMethod: { type: 'card', pan: BENCH_TEST_PAN, expiryMonth: 12, expiryYear: new Date().getUTCFullYear() + 3, holderName: 'Drill Customer' },
});

// ------------------------------------------------------------------ the faults
interface FaultReport {
  fault: Fault;
  counts: Record<string, number>;
  bad: string[];
  maxLatencyMs: number;
  databaseDownMs: number;
  firstCreatedAfterBackMs: number | null;
  readyz503AfterFaultMs: number | null;
  readyz200AfterBackMs: number | null;
  serviceAlive: boolean;
}

const acknowledged = new Map<string, { logIndex: number; body: Record<string, any> }>();
const reports: FaultReport[] = [];

for (const fault of faults) {
  const run: LoadRun = startLoad({ submit: (b) => post(checkout, '/v1/transactions', b), release: (id) => post(acme, `/v1/transactions/${id}/release`, { purpose: 'capture' }), makeBody }, concurrency);
  let readyzStop = false;
  const readyz: { t: number; status: number }[] = [];
  const poller = (async () => {
    while (!readyzStop) {
      const r = await get('/readyz', anonymous).catch(() => ({ status: 0 }));
      readyz.push({ t: performance.now(), status: r.status });
      await sleep(READYZ_POLL_MS);
    }
  })();
  await sleep(steadyMs);
  const faultAt = performance.now();
  let downAt = faultAt;
  if (fault === 'fast') pgCtl(['restart', '-m', 'fast']);
  else if (fault === 'immediate') pgCtl(['restart', '-m', 'immediate']);
  else {
    pgCtl(['stop', '-m', 'fast']);
    downAt = performance.now();
    await sleep(Number(o.gapMs));
    pgCtl(['start']);
  }
  const back = performance.now();
  while (run.firstCreatedAfter(back) === undefined && performance.now() - back < RESUME_GIVE_UP_MS) await sleep(20);
  await sleep(steadyMs);
  await run.stop();
  readyzStop = true;
  await poller;
  for (const [id, a] of run.acked) acknowledged.set(id, a);
  const first = run.firstCreatedAfter(back);
  const r503 = readyz.find((x) => x.t >= faultAt && x.status === 503);
  const r200 = readyz.find((x) => x.t >= back && x.status === 200);
  reports.push({
    fault,
    counts: run.counts(),
    bad: run.bad.slice(0, 20),
    maxLatencyMs: Math.round(run.maxLatencyMs()),
    databaseDownMs: Math.round(back - downAt),
    firstCreatedAfterBackMs: first === undefined ? null : Math.round(first - back),
    readyz503AfterFaultMs: r503 ? Math.round(r503.t - faultAt) : null,
    readyz200AfterBackMs: r200 ? Math.round(r200.t - back) : null,
    serviceAlive: exited === undefined,
  });
}

// ------------------------------------------------------------------ afterwards
const db = new pg.Client({ connectionString: databaseUrl });
db.on('error', () => {});
await db.connect();
const stored = new Map((await db.query('SELECT transaction_id, log_index FROM transactions')).rows.map((r) => [r.transaction_id as string, Number(r.log_index)]));
const missing = [...acknowledged].filter(([id, a]) => stored.get(id) !== a.logIndex).map(([id]) => id);
const leaves = (await db.query('SELECT idx, leaf FROM log_entries ORDER BY idx')).rows as { idx: string; leaf: Buffer }[];
const dense = leaves.every((l, i) => Number(l.idx) === i);
const head = (await db.query('SELECT size, root_hash FROM tree_heads ORDER BY size DESC LIMIT 1')).rows[0] as { size: string; root_hash: Buffer } | undefined;
const rootOk = head !== undefined && Number(head.size) === leaves.length && rootFromLeafHashes(leaves.map((l) => hashLeaf(l.leaf))).equals(head.root_hash);
await db.end();

// The published checkpoint catches up with the tree (publisher: within a second of the last batch).
for (let i = 0; i < 100; i++) {
  const cp = await get('/v1/log/checkpoint', agentFor('auditor')).catch(() => undefined);
  if (cp?.status === 200 && Number(cp.text.split('\n')[1]) === leaves.length) break;
  await sleep(100);
}
const verify = spawnSync(
  process.execPath,
  ['--import', 'tsx', 'scripts/verify-log.ts', '--url', url, '--cacert', join(pki, 'ca.pem'), '--cert', join(pki, 'auditor.pem'), '--key', join(pki, 'auditor-key.pem')],
  { cwd: REPO_ROOT, encoding: 'utf8' },
);
const sample = [...acknowledged].filter((_, i) => i % Math.max(1, Math.floor(acknowledged.size / 10)) === 0).slice(0, 10);
let releasesOk = 0;
for (const [id, a] of sample) {
  const r = await post(acme, `/v1/transactions/${id}/release`, { purpose: 'settlement' }).catch(() => undefined);
  if (r?.status === 200 && isDeepStrictEqual(r.json?.paymentMethod, a.body.paymentMethod)) releasesOk++;
}

const summary = {
  postgres: o.pgdata,
  database: databaseName,
  concurrency,
  faults: reports,
  acknowledged: acknowledged.size,
  acknowledgedMissingOrMoved: missing.length,
  logSize: leaves.length,
  indexesDense: dense,
  rootMatches: rootOk,
  verifyLogExit: verify.status,
  sampleReleasesOk: `${releasesOk}/${sample.length}`,
  serviceAlive: exited === undefined,
};
const ok =
  summary.serviceAlive &&
  reports.every((r) => r.bad.length === 0 && r.firstCreatedAfterBackMs !== null) &&
  missing.length === 0 &&
  dense &&
  rootOk &&
  verify.status === 0 &&
  releasesOk === sample.length;

checkout.destroy();
acme.destroy();
anonymous.destroy();
child.kill('SIGTERM');
await new Promise((r) => (exited ? r(undefined) : child.once('exit', r)));
rmSync(dataDir, { recursive: true, force: true });

if (o.json) process.stdout.write(JSON.stringify({ ok, ...summary }, null, 2) + '\n');
else {
  const lines = [`fault drill on ${o.pgdata} (database ${databaseName}), concurrency ${concurrency}`];
  lines.push('fault      | 201   200  503   other | release 200/503 | max wait ms | db down ms | first 201 after back ms | readyz 503 after fault / 200 after back ms');
  for (const r of reports) {
    const c = (k: string) => String(r.counts[k] ?? 0);
    lines.push(
      `${r.fault.padEnd(10)} | ${c('201').padEnd(5)} ${c('200').padEnd(4)} ${c('503').padEnd(5)} ${String(r.bad.length).padEnd(5)} | ${c('release 200')}/${c('release 503')} | ${r.maxLatencyMs} | ${r.databaseDownMs} | ${r.firstCreatedAfterBackMs ?? 'never'} | ${r.readyz503AfterFaultMs ?? '-'} / ${r.readyz200AfterBackMs ?? '-'}`,
    );
    for (const b of r.bad) lines.push(`  bad: ${b}`);
  }
  lines.push(
    `acknowledged ${summary.acknowledged}, missing or moved ${summary.acknowledgedMissingOrMoved}; log size ${summary.logSize}, dense ${dense}, root ${rootOk}; verify-log exit ${verify.status}; sample releases ${summary.sampleReleasesOk}; service alive ${summary.serviceAlive}`,
  );
  lines.push(ok ? 'DRILL PASSED' : 'DRILL FAILED');
  process.stdout.write(lines.join('\n') + '\n');
}
process.exit(ok ? 0 : 1);
