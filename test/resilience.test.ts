/**
 * Time budgets and error answers, each on a real service and a real PostgreSQL:
 * - the append advisory lock is waited for at most PAYLOG_DB_LOCK_TIMEOUT_MS (503, Retry-After);
 * - a request past PAYLOG_REQUEST_TIMEOUT_MS is answered 503 with Retry-After, the late handler
 *   never touches the reply again, and retrying the same submission is safe;
 * - a transient database error during release is 503 LOG_UNAVAILABLE, not 422 INTEGRITY_FAILURE;
 * - an INTERNAL error logs its (scrubbed) cause and the request id the client is given;
 * - publish() is single-flight: concurrent calls store one checkpoint per tree head;
 * - /readyz checks are bounded: a check that never answers fails at its deadline.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { ConfigError, TIME_BUDGET_DEFAULTS, loadConfig } from '../src/config.js';
import { APPEND_LOCK_KEY } from '../src/log/appender.js';
import { errorForLog } from '../src/logging.js';
import { createReadiness } from '../src/readiness.js';
import { query, withClient } from './helpers/db.js';
import { cardTransaction, startTestPaylog, type TestPaylog } from './helpers/paylog.js';

const LOCK_TIMEOUT_MS = 1_000;
const SHORT_BUDGET_MS = 600;
/** b's lock timeout: far beyond its request budget, so only the budget can answer while the lock is held. */
const LONG_LOCK_TIMEOUT_MS = 20_000;

/** How long a test waits for a request to reach the lock it is meant to wait for. */
const WAITER_TIMEOUT_MS = 30_000;

/** Holds the append advisory lock from an owner session until `release()`. */
async function holdAppendLock(url: string): Promise<{ release(): Promise<void> }> {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => {});
  await c.connect();
  await c.query('SELECT pg_advisory_lock($1)', [APPEND_LOCK_KEY.toString()]);
  return {
    release: async () => {
      await c.query('SELECT pg_advisory_unlock($1)', [APPEND_LOCK_KEY.toString()]);
      await c.end();
    },
  };
}

describe('time budgets on a real service', () => {
  let a: TestPaylog; // short lock timeout, long request budget
  let b: TestPaylog; // long lock timeout, short request budget
  beforeAll(async () => {
    a = await startTestPaylog({ env: { PAYLOG_DB_LOCK_TIMEOUT_MS: String(LOCK_TIMEOUT_MS), PAYLOG_REQUEST_TIMEOUT_MS: '20000' } });
    b = await startTestPaylog({ env: { PAYLOG_DB_LOCK_TIMEOUT_MS: String(LONG_LOCK_TIMEOUT_MS), PAYLOG_REQUEST_TIMEOUT_MS: String(SHORT_BUDGET_MS) } });
  });
  afterAll(async () => {
    await b?.stop();
    await a?.stop();
  });

  it('the append advisory lock is waited for at most PAYLOG_DB_LOCK_TIMEOUT_MS: 503 LOG_UNAVAILABLE with Retry-After, then 201', async () => {
    const lock = await holdAppendLock(a.databaseUrl);
    const body = cardTransaction();
    let r;
    try {
      r = await a.call('checkout', 'POST', '/v1/transactions', body);
    } finally {
      await lock.release();
    }
    expect(r.status, r.text).toBe(503);
    expect(r.json.error.code).toBe('LOG_UNAVAILABLE');
    expect(r.headers['retry-after']).toMatch(/^\d+$/);
    expect(await query(a.databaseUrl, 'SELECT 1 FROM transactions WHERE transaction_id = $1', [body.transactionId])).toEqual([]);
    expect((await a.call('checkout', 'POST', '/v1/transactions', body)).status).toBe(201);
  });

  it('a request past PAYLOG_REQUEST_TIMEOUT_MS is 503 with Retry-After; the late handler stays silent; the same submission retried is 200', async () => {
    const lock = await holdAppendLock(b.databaseUrl);
    const body = cardTransaction();
    let r;
    const t0 = performance.now();
    try {
      r = await b.call('checkout', 'POST', '/v1/transactions', body);
      // Answered by the budget, not by the lock timeout (the lock is held until after the answer);
      // no tighter bound: the connection, KMS and a loaded machine's pauses add to the 600 ms.
      expect(performance.now() - t0).toBeLessThan(LONG_LOCK_TIMEOUT_MS / 2);
    } finally {
      await lock.release();
    }
    expect(r.status, r.text).toBe(503);
    expect(r.json.error.code).toBe('LOG_UNAVAILABLE');
    expect(r.json.error.message).toMatch(/time budget/);
    expect(r.headers['retry-after']).toMatch(/^\d+$/);
    // The queued entry commits once the lock is free; a retry is answered from the log.
    // Each retry has the same 600 ms budget, which a loaded machine can overrun: retried until a
    // deadline rather than a count.
    let again;
    for (const deadline = Date.now() + WAITER_TIMEOUT_MS; ; ) {
      again = await b.call('checkout', 'POST', '/v1/transactions', body);
      if (again.status !== 503 || Date.now() > deadline) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    expect([200, 201]).toContain(again!.status);
    const rows = await query(b.databaseUrl, 'SELECT log_index FROM transactions WHERE transaction_id = $1', [body.transactionId]);
    expect(rows).toHaveLength(1);
    expect(Number(rows[0].log_index)).toBe(again!.json.logIndex);
    expect(b.logLines.filter((l) => /already sent/i.test(l))).toEqual([]);
  });

  it('a transient database error while releasing is 503 LOG_UNAVAILABLE (was 422 INTEGRITY_FAILURE), and the attempt is logged as such', async () => {
    const body = cardTransaction();
    expect((await a.call('checkout', 'POST', '/v1/transactions', body)).status).toBe(201);
    // An owner session locks data_keys so the release's first read of it (authorization or the key
    // lookup) waits; that one backend is
    // then terminated (57P01, as in a failover) and the lock let go, so the access entry commits.
    const r = await withClient(a.databaseUrl, async (c) => {
      await c.query('BEGIN');
      await c.query('LOCK TABLE data_keys IN ACCESS EXCLUSIVE MODE');
      const pending = a.call('processor-acme', 'POST', `/v1/transactions/${body.transactionId}/release`, { purpose: 'capture' });
      try {
        // Bounded by time, not by a count of polls (each opens a connection: slow on a loaded machine).
        const deadline = Date.now() + WAITER_TIMEOUT_MS;
        for (;;) {
          const waiting = await query<{ pid: number }>(
            a.databaseUrl,
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query ILIKE '%data_keys%'",
          );
          if (waiting.length > 0) {
            await query(a.databaseUrl, 'SELECT pg_terminate_backend($1)', [waiting[0]!.pid]);
            break;
          }
          if (Date.now() > deadline) throw new Error(`the release never waited for data_keys within ${WAITER_TIMEOUT_MS} ms`);
          await new Promise((res) => setTimeout(res, 20));
        }
      } finally {
        await c.query('ROLLBACK');
      }
      return await pending;
    });
    expect(r.status, r.text).toBe(503);
    expect(r.json.error.code).toBe('LOG_UNAVAILABLE');
    expect(r.headers['retry-after']).toMatch(/^\d+$/);
    expect(r.text).not.toContain(body.paymentMethod.pan);
    const logged = await a.call('auditor', 'GET', `/v1/transactions/${body.transactionId}/accesses`);
    expect(logged.json.accesses.map((x: { outcome: string; reason: string | null }) => `${x.outcome}:${x.reason}`)).toEqual(['denied:LOG_UNAVAILABLE']);
    const ok = await a.call('processor-acme', 'POST', `/v1/transactions/${body.transactionId}/release`, { purpose: 'capture' });
    expect(ok.status).toBe(200);
    expect(ok.json.paymentMethod).toEqual(body.paymentMethod);
  });

  it('an INTERNAL error logs its cause and the request id; the answer names that request id', async () => {
    await query(a.databaseUrl, 'REVOKE SELECT ON processors FROM paylog_app');
    let r;
    try {
      r = await a.call('admin', 'GET', '/v1/admin/processors');
    } finally {
      await query(a.databaseUrl, 'GRANT SELECT ON processors TO paylog_app');
    }
    expect(r.status).toBe(500);
    expect(r.json.error.code).toBe('INTERNAL');
    expect(r.json.error.message).toBe('internal error');
    const requestId = r.json.error.details?.requestId;
    expect(typeof requestId).toBe('string');
    const line = a.logLines.map((l) => JSON.parse(l)).find((o) => o.msg === 'internal error' && o.reqId === requestId);
    expect(line, 'an error-level line with the request id').toBeDefined();
    expect(line.level).toBe(50);
    expect(JSON.stringify(line.error)).toMatch(/permission denied for table processors/);
  });

  it('every 503 carries Retry-After, /readyz included', async () => {
    const lock = await holdAppendLock(a.databaseUrl);
    try {
      const r = await a.call('checkout', 'POST', '/v1/transactions', cardTransaction());
      expect(r.status).toBe(503);
      expect(r.headers['retry-after']).toBe('1');
    } finally {
      await lock.release();
    }
  });

  it('publish() is single-flight: concurrent calls store one checkpoint for one tree head', async () => {
    expect((await a.call('checkout', 'POST', '/v1/transactions', cardTransaction())).status).toBe(201);
    const results = await Promise.all(Array.from({ length: 8 }, () => a.paylog.checkpoints.publish()));
    const size = results[results.length - 1]!.size;
    const rows = await query(a.databaseUrl, 'SELECT id FROM checkpoints WHERE size = $1', [size]);
    expect(rows).toHaveLength(1);
  });
});

describe('bounded readiness', () => {
  it('a check that never answers fails at its deadline; a later round recovers', async () => {
    let stalled = true;
    const readiness = createReadiness(
      { ok: async () => {}, flaky: (signal) => (stalled ? new Promise((_r, rej) => signal.addEventListener('abort', () => rej(new Error('aborted')))) : Promise.resolve()) },
      { cacheMs: 50, timeoutMs: 200 },
    );
    const first = await readiness();
    expect(first).toEqual({ ok: false, checks: { ok: true, flaky: false } });
    stalled = false;
    // Well past the 50 ms cache: a timer can fire up to its loop's stale time early, and a loaded
    // machine can pause between the round's end (the cache's stamp) and the timer being set.
    await new Promise((r) => setTimeout(r, 250));
    expect(await readiness()).toEqual({ ok: true, checks: { ok: true, flaky: true } });
  });

  it('a check that ignores its signal still fails at the deadline', async () => {
    const readiness = createReadiness({ never: () => new Promise(() => {}) }, { cacheMs: 0, timeoutMs: 100 });
    expect(await readiness()).toEqual({ ok: false, checks: { never: false } });
  });
});

describe('logged errors', () => {
  it('keep type, code and message, without card numbers, IBANs or drizzle query parameters', () => {
    const pgErr = Object.assign(new Error('invalid input syntax for type bigint: "4111 1111 1111 1111" near DE89370400440532013000'), { code: '22P02' });
    const drizzle = Object.assign(new Error('Failed query: select * from t where id = $1\nparams: 4111111111111111'), { name: 'DrizzleQueryError', cause: pgErr });
    const logged = JSON.stringify(errorForLog(drizzle));
    expect(logged).not.toMatch(/4111|DE89|params/);
    expect(errorForLog(drizzle)).toMatchObject({ type: 'DrizzleQueryError', message: 'database query failed', cause: { code: '22P02' } });
    expect(errorForLog(drizzle).cause?.message).toMatch(/^invalid input syntax for type bigint/);
  });
});

describe('time budget settings', () => {
  it('have documented defaults and are validated by name', () => {
    expect(loadConfig({}).budgets).toEqual(TIME_BUDGET_DEFAULTS);
    expect(loadConfig({ PAYLOG_DB_LOCK_TIMEOUT_MS: '250', PAYLOG_KMS_MAX_ATTEMPTS: '1' }).budgets).toMatchObject({ dbLockTimeoutMs: 250, kmsMaxAttempts: 1 });
    for (const [k, v] of [
      ['PAYLOG_DB_STATEMENT_TIMEOUT_MS', '0'],
      ['PAYLOG_DB_CONNECT_TIMEOUT_MS', 'soon'],
      ['PAYLOG_KMS_MAX_ATTEMPTS', '0'],
      ['PAYLOG_REQUEST_TIMEOUT_MS', '-1'],
    ] as const) {
      expect(() => loadConfig({ [k]: v })).toThrow(ConfigError);
      expect(() => loadConfig({ [k]: v })).toThrow(k);
    }
  });
});
