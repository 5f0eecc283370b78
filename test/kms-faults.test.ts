/**
 * The service outlives its KMS. The real KMS client (AWS mode: AWS_ENDPOINT_URL_KMS) talks to the
 * local endpoint through a loopback front that can stall (accept, never answer), refuse (closed
 * port) or answer HTTP 500. For each fault: submissions and releases are answered 503 with
 * Retry-After within the request budget, nothing is half-written, /readyz turns 503, and once
 * KMS answers again /readyz is 200 and submissions are acknowledged again.
 *
 * The service runs with PAYLOG_KEY_MODE=per-transaction, where every submission (GenerateDataKey)
 * and every release (Decrypt) calls KMS. In the default hierarchical mode a submission needs no
 * KMS call at all (test/key-epochs.test.ts counts them) and a release calls KMS only on an
 * epoch-cache miss, so a KMS outage does not stop submissions.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKmsClient, LOCAL_DEV_ONLY_ACCESS_KEY_ID, LOCAL_DEV_ONLY_SECRET_ACCESS_KEY, PaylogKms } from '../src/kms/client.js';
import { startLocalKms, type LocalKmsEndpoint } from '../src/kms/local/server.js';
import { READINESS_CACHE_MS, READINESS_CHECK_TIMEOUT_MS } from '../src/readiness.js';
import { startKmsFaultFront, type KmsFaultFront, type KmsFaultMode } from './helpers/kms-fault.js';
import { query } from './helpers/db.js';
import { cardTransaction, startTestPaylog, type TestPaylog } from './helpers/paylog.js';

const REGION = 'us-east-1';
/** Short budgets so the file runs fast; the defaults are in src/config.ts. */
const KMS_CONNECT_TIMEOUT_MS = 300;
const KMS_REQUEST_TIMEOUT_MS = 500;
const REQUEST_TIMEOUT_MS = 3_000;
/** Scheduling slack on a shared machine for bounds derived from the settings. */
const SLACK_MS = 1_500;
/** /readyz must follow a fault (or the recovery) within this. */
const READY_FLIP_BOUND_MS = READINESS_CACHE_MS + READINESS_CHECK_TIMEOUT_MS + SLACK_MS;

const SAVED_ENV = ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_EC2_METADATA_DISABLED'].map((k) => [k, process.env[k]] as const);

let dir: string;
let kmsEndpoint: LocalKmsEndpoint;
let front: KmsFaultFront;
let t: TestPaylog;
let released: Record<string, any>;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'paylog-kmsfault-'));
  kmsEndpoint = await startLocalKms({ keyStoreDir: join(dir, 'kms') });
  // The keys exist before the service starts, as they would in AWS.
  const setup = createKmsClient({ endpoint: kmsEndpoint.url, region: REGION, local: true });
  const kms = new PaylogKms(setup);
  await kms.ensureKey('paylog-data', 'SYMMETRIC_DEFAULT');
  await kms.ensureKey('paylog-checkpoint', 'ECC_NIST_EDWARDS25519');
  setup.destroy();
  front = await startKmsFaultFront(kmsEndpoint.url);
  // The AWS credential chain reads these first (and never reaches for instance metadata).
  process.env.AWS_ACCESS_KEY_ID = LOCAL_DEV_ONLY_ACCESS_KEY_ID;
  process.env.AWS_SECRET_ACCESS_KEY = LOCAL_DEV_ONLY_SECRET_ACCESS_KEY;
  process.env.AWS_EC2_METADATA_DISABLED = 'true';
  t = await startTestPaylog({
    env: {
      AWS_ENDPOINT_URL_KMS: front.url,
      AWS_REGION: REGION,
      PAYLOG_KMS_CONNECT_TIMEOUT_MS: String(KMS_CONNECT_TIMEOUT_MS),
      PAYLOG_KMS_REQUEST_TIMEOUT_MS: String(KMS_REQUEST_TIMEOUT_MS),
      PAYLOG_KMS_MAX_ATTEMPTS: '2',
      PAYLOG_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
      PAYLOG_RELEASE_RATE_PER_MINUTE: '100000',
      PAYLOG_LOG_LEVEL: 'warn',
      PAYLOG_KEY_MODE: 'per-transaction',
    },
  });
  released = cardTransaction();
  expect((await t.call('checkout', 'POST', '/v1/transactions', released)).status).toBe(201);
});

afterAll(async () => {
  await front?.set('pass');
  await t?.stop();
  await front?.close();
  await kmsEndpoint?.close();
  for (const [k, v] of SAVED_ENV) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Polls /readyz until it answers `status`; returns how long that took (Infinity: never within `boundMs`). */
async function readyzBecomes(status: number, boundMs: number): Promise<number> {
  const t0 = performance.now();
  while (performance.now() - t0 < boundMs) {
    const r = await t.call(null, 'GET', '/readyz');
    if (r.status === 503) expect(r.headers['retry-after']).toMatch(/^\d+$/);
    if (r.status === status) return performance.now() - t0;
    await sleep(50);
  }
  return Infinity;
}

async function timed<T>(p: Promise<T>): Promise<{ r: T; ms: number }> {
  const t0 = performance.now();
  const r = await p;
  return { r, ms: performance.now() - t0 };
}

describe.each<KmsFaultMode>(['stall', 'refuse', 'http500'])('KMS fault: %s', (mode) => {
  it('submissions and releases get 503 with Retry-After within the budget; nothing is half-written; /readyz turns 503', async () => {
    await front.set(mode);
    const body = cardTransaction();
    const [post, rel] = await Promise.all([
      timed(t.call('checkout', 'POST', '/v1/transactions', body)),
      timed(t.call('processor-acme', 'POST', `/v1/transactions/${released.transactionId}/release`, { purpose: 'capture' })),
    ]);
    for (const { r, ms } of [post, rel]) {
      expect(r.status, r.text).toBe(503);
      expect(r.json.error.code).toBe('KMS_UNAVAILABLE');
      expect(r.headers['retry-after']).toMatch(/^\d+$/);
      expect(ms).toBeLessThan(REQUEST_TIMEOUT_MS + SLACK_MS);
      expect(r.text).not.toContain(released.paymentMethod.pan);
    }
    // No transaction row, no data key, no leaf for the refused submission.
    for (const table of ['transactions', 'log_entries']) {
      expect(await query(t.databaseUrl, `SELECT 1 FROM ${table} WHERE transaction_id = $1`, [body.transactionId]), table).toEqual([]);
    }
    // data_keys rows are keyed by log index (migration 0018): none without its transactions row.
    expect(await query(t.databaseUrl, 'SELECT 1 FROM data_keys d LEFT JOIN transactions x ON x.log_index = d.log_index WHERE x.log_index IS NULL OR x.transaction_id = $1', [body.transactionId])).toEqual([]);
    expect(await readyzBecomes(503, READY_FLIP_BOUND_MS)).toBeLessThan(READY_FLIP_BOUND_MS);
    const ready = await t.call(null, 'GET', '/readyz');
    expect(ready.json.checks).toMatchObject({ database: true, kms: false });
  });

  it('recovers once KMS answers again: /readyz 200, submissions 201, releases 200', async () => {
    await front.set('pass');
    const tBack = performance.now();
    expect(await readyzBecomes(200, READY_FLIP_BOUND_MS)).toBeLessThan(READY_FLIP_BOUND_MS);
    let created: number | undefined;
    const body = cardTransaction();
    while (created === undefined && performance.now() - tBack < READY_FLIP_BOUND_MS + REQUEST_TIMEOUT_MS) {
      const r = await t.call('checkout', 'POST', '/v1/transactions', body);
      if (r.status === 201 || r.status === 200) created = performance.now() - tBack;
      else expect(r.status).toBe(503);
    }
    expect(created).toBeDefined();
    const rel = await t.call('processor-acme', 'POST', `/v1/transactions/${released.transactionId}/release`, { purpose: 'capture' });
    expect(rel.status).toBe(200);
    expect(rel.json.paymentMethod).toEqual(released.paymentMethod);
    console.log(`KMS ${mode}: first acknowledged submission ${created!.toFixed(0)} ms after KMS answered again`);
  });
});
