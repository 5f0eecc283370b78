/**
 * The service outlives its database. A dedicated embedded PostgreSQL cluster (so restarting it
 * disturbs no other test file) is stopped under load of 32 concurrent mTLS clients — fast
 * shutdown (SIGINT, as `pg_ctl -m fast`) with immediate restart, immediate shutdown (SIGQUIT,
 * `-m immediate`: crash recovery on start) and a stop with a gap — while the service keeps
 * running in this process. An unhandled 'error' event would kill this worker and fail the file.
 *
 * Asserted: every answer is 201/200 or 503 with Retry-After (no 500, no connection refused),
 * submissions are acknowledged (201) again soon after the database is back, and afterwards every
 * acknowledged transaction is stored at its log index, the indexes are dense, the tree head's
 * root is the RFC 9162 root of the leaves, the auditor verifier accepts the log and releases
 * return what was sent, and the shred-notice listener has reopened its connection.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase } from '../src/db/connection.js';
import { freePort, startEmbeddedPostgres, type EmbeddedServer } from '../src/db/embedded.js';
import { LogClient, checkpointSize, verifyRemoteLog } from '../src/audit/index.js';
import { hashLeaf, rootFromLeafHashes } from '../src/log/merkle.js';
import { toNoteVerifiers } from '../src/audit/index.js';
import { startLoad, type LoadRun } from '../scripts/drill/load.js';
import { query } from './helpers/db.js';
import { cardTransaction, startTestPaylog, type TestPaylog } from './helpers/paylog.js';
import { alive, postmasterPid } from './helpers/postmaster.js';

const CONCURRENCY = 32;
/** Load before the fault, and after the first 201 once the database is back. */
const STEADY_MS = 700;
/** Liveness bound (not a speed figure): 201s must come back within this after the database. */
const RESUME_BOUND_MS = 10_000;
const GAP_MS = 2_000;
/** Submissions acknowledged before the fault is injected. */
const WARM_CREATED = 32;

let pgDir: string;
let pgPort: number;
let pgServer: EmbeddedServer;
let t: TestPaylog;

/** Anything that would have killed a service process (an unhandled 'error' event, a rejection). */
const uncaught: string[] = [];
const onUncaught = (e: unknown) => uncaught.push(`${(e as Error)?.name}: ${(e as Error)?.message}`);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Signals the postmaster and waits (bounded) until it has exited. */
async function shutdown(signal: 'SIGINT' | 'SIGQUIT'): Promise<void> {
  const pid = postmasterPid(pgDir);
  process.kill(pid, signal);
  for (let i = 0; i < 300 && alive(pid); i++) await sleep(50);
  if (alive(pid)) throw new Error(`postmaster ${pid} still running after ${signal}`);
}

beforeAll(async () => {
  process.on('uncaughtException', onUncaught);
  process.on('unhandledRejection', onUncaught);
  pgDir = mkdtempSync(join(tmpdir(), 'paylog-dbfault-pg-'));
  pgPort = await freePort();
  pgServer = await startEmbeddedPostgres({ dataDir: pgDir, port: pgPort });
  const databaseUrl = await createDatabase(pgServer.adminUrl, 'paylog_dbfault');
  t = await startTestPaylog({
    databaseUrl,
    env: {
      PAYLOG_RELEASE_RATE_PER_MINUTE: '100000',
      PAYLOG_LOG_LEVEL: 'warn',
      PAYLOG_DB_CONNECT_TIMEOUT_MS: '1000',
      PAYLOG_DB_STATEMENT_TIMEOUT_MS: '3000',
      PAYLOG_REQUEST_TIMEOUT_MS: '5000',
    },
  });
});

afterAll(async () => {
  process.off('uncaughtException', onUncaught);
  process.off('unhandledRejection', onUncaught);
  await t?.stop();
  await pgServer?.stop();
  if (pgDir) rmSync(pgDir, { recursive: true, force: true });
});

function load(): LoadRun {
  const answer = (r: Awaited<ReturnType<TestPaylog['call']>>) => ({ status: r.status, retryAfter: r.headers['retry-after'] as string | undefined, json: r.json });
  return startLoad(
    {
      submit: async (body) => answer(await t.call('checkout', 'POST', '/v1/transactions', body)),
      release: async (id) => answer(await t.call('processor-acme', 'POST', `/v1/transactions/${id}/release`, { purpose: 'capture' })),
      makeBody: () => cardTransaction(),
    },
    CONCURRENCY,
  );
}

/** Runs load through one fault; returns the run and when the database was back. */
async function drill(fault: () => Promise<void>): Promise<{ run: LoadRun; back: number; resumedAfterMs: number }> {
  const run = load();
  try {
    // Steady state first: the service is taking writes before the fault.
    for (let i = 0; i < 400 && (run.counts()['201'] ?? 0) < WARM_CREATED; i++) await sleep(25);
    expect(run.counts()['201'] ?? 0, JSON.stringify(run.counts())).toBeGreaterThanOrEqual(WARM_CREATED);
    await fault();
    pgServer = await startEmbeddedPostgres({ dataDir: pgDir, port: pgPort });
    const back = performance.now();
    let first: number | undefined;
    while ((first = run.firstCreatedAfter(back)) === undefined && performance.now() - back < RESUME_BOUND_MS) await sleep(25);
    await sleep(STEADY_MS);
    return { run, back, resumedAfterMs: first === undefined ? Infinity : first - back };
  } finally {
    await run.stop();
  }
}

const acknowledged = new Map<string, { logIndex: number; body: Record<string, any> }>();

function expectOnlyAllowedAnswers(run: LoadRun, resumedAfterMs: number): void {
  expect(uncaught, 'the service process would have died').toEqual([]);
  expect(run.bad).toEqual([]);
  const counts = run.counts();
  expect(counts['503'] ?? 0).toBeGreaterThan(0); // the fault was seen by clients
  expect(resumedAfterMs).toBeLessThan(RESUME_BOUND_MS);
  for (const [id, a] of run.acked) acknowledged.set(id, a);
  console.log(`db fault: ${JSON.stringify(counts)}, max latency ${run.maxLatencyMs().toFixed(0)} ms, first 201 ${resumedAfterMs.toFixed(0)} ms after the database was back`);
}

describe('PostgreSQL restarts under load', () => {
  it('fast shutdown (SIGINT) and restart: the service stays up, answers 503 with Retry-After, then 201 again', async () => {
    const { run, resumedAfterMs } = await drill(() => shutdown('SIGINT'));
    expectOnlyAllowedAnswers(run, resumedAfterMs);
  });

  it('immediate shutdown (SIGQUIT) and restart with crash recovery', async () => {
    const { run, resumedAfterMs } = await drill(() => shutdown('SIGQUIT'));
    expectOnlyAllowedAnswers(run, resumedAfterMs);
  });

  it('stop, a gap with no database at all (/readyz 503 meanwhile), start', async () => {
    let readyzDuringGap: { status: number; retryAfter: unknown } | undefined;
    const { run, resumedAfterMs } = await drill(async () => {
      await shutdown('SIGINT');
      const gapStart = performance.now();
      while (performance.now() - gapStart < GAP_MS) {
        const r = await t.call(null, 'GET', '/readyz');
        if (r.status === 503) readyzDuringGap ??= { status: r.status, retryAfter: r.headers['retry-after'] };
        await sleep(100);
      }
    });
    expectOnlyAllowedAnswers(run, resumedAfterMs);
    expect(readyzDuringGap).toEqual({ status: 503, retryAfter: '1' });
    expect((await t.call(null, 'GET', '/readyz')).status).toBe(200);
  });

  it('afterwards: every acknowledged transaction is stored at its index, indexes are dense, the log verifies, releases return what was sent', async () => {
    expect(acknowledged.size).toBeGreaterThan(0);
    const rows = await query<{ transaction_id: string; log_index: string }>(t.databaseUrl, 'SELECT transaction_id, log_index FROM transactions');
    const stored = new Map(rows.map((r) => [r.transaction_id, Number(r.log_index)]));
    for (const [id, a] of acknowledged) expect(stored.get(id), id).toBe(a.logIndex);

    const leaves = await query<{ idx: string; leaf: Buffer }>(t.databaseUrl, 'SELECT idx, leaf FROM log_entries ORDER BY idx');
    leaves.forEach((l, i) => expect(Number(l.idx)).toBe(i));
    const [head] = await query<{ size: string; root_hash: Buffer }>(t.databaseUrl, 'SELECT size, root_hash FROM tree_heads ORDER BY size DESC LIMIT 1');
    expect(Number(head!.size)).toBe(leaves.length);
    expect(rootFromLeafHashes(leaves.map((l) => hashLeaf(l.leaf))).equals(head!.root_hash)).toBe(true);

    // The auditor's verifier over the live service, once the checkpoint covers the whole tree.
    const pki = t.paylog.devPki!;
    const auditor = pki.principals.auditor!;
    const client = new LogClient({ url: t.paylog.url, ca: pki.caCertPem, cert: readFileSync(auditor.certPath), key: readFileSync(auditor.keyPath) });
    for (let i = 0; i < 200 && checkpointSize(await client.checkpoint()) !== leaves.length; i++) {
      await t.paylog.checkpoints.publish().catch(() => null);
      await sleep(50);
    }
    const report = await verifyRemoteLog(client, { verifiers: toNoteVerifiers(t.paylog.logKeys.map((k) => k.vkey)) });
    expect(report.ok, JSON.stringify(report.failures)).toBe(true);
    expect(report.entriesVerified).toBe(leaves.length);

    // The shred-notice listener (a connection of its own) is back too (reopened with back-off).
    let listening = '';
    for (let i = 0; i < 200 && !/^paylog_key_notices_listening 1$/m.test(listening); i++) {
      listening = await t.paylog.metrics.registry.getSingleMetricAsString('paylog_key_notices_listening');
      await sleep(100);
    }
    expect(listening).toMatch(/^paylog_key_notices_listening 1$/m);

    const sample = [...acknowledged.entries()].filter((_, i) => i % Math.max(1, Math.floor(acknowledged.size / 5)) === 0).slice(0, 5);
    for (const [id, a] of sample) {
      const r = await t.call('processor-acme', 'POST', `/v1/transactions/${id}/release`, { purpose: 'settlement' });
      expect(r.status).toBe(200);
      expect(r.json.paymentMethod).toEqual(a.body.paymentMethod);
    }
  });
});
